//! Total-variation loss: a smoothness prior on the image itself.

use nst_tensor::Var;

/// `L_tv = [Σ (x[c,i+1,j] − x[c,i,j])² + Σ (x[c,i,j+1] − x[c,i,j])²] / (3·H·W)` for the
/// 1×3×H×W image `x`: squared differences of vertical and horizontal neighbours, divided by the
/// number of elements.
pub fn tv_loss<'g>(image: Var<'g>) -> Var<'g> {
    let n = image.shape().iter().product::<usize>() as f32;
    (image.diff_h().square().sum() + image.diff_w().square().sum()).scale(1.0 / n)
}
