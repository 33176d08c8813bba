//! Content loss: how far the image's feature maps are from the content image's.

use nst_tensor::ndarray::ArrayD;
use nst_tensor::Var;
use std::sync::Arc;

/// `L_c = mean_l mean_i (F_l(x) − F_l(c))²`: the mean squared difference over each layer's
/// elements, then the mean over the content layers. `features[l]` is `F_l(x)` on the tape and
/// `targets[l]` the constant `F_l(c)`.
///
/// This is the paper's `½ Σ (F − P)²` divided by the map's size (as the classic implementations
/// do), so that layers of different sizes weigh alike.
pub fn content_loss<'g>(features: &[Var<'g>], targets: &[Arc<ArrayD<f32>>]) -> Var<'g> {
    assert_eq!(
        features.len(),
        targets.len(),
        "content_loss: one target per layer"
    );
    mean_of_layers(features.iter().zip(targets).map(|(f, p)| {
        let p = f.graph().constant(Arc::clone(p));
        f.mse(p)
    }))
}

/// The mean of per-layer losses (a sum scaled by `1/L`).
pub(crate) fn mean_of_layers<'g>(losses: impl Iterator<Item = Var<'g>>) -> Var<'g> {
    let losses: Vec<Var<'g>> = losses.collect();
    let n = losses.len();
    assert!(n > 0, "a loss needs at least one layer");
    let total = losses.into_iter().reduce(|a, b| a + b).expect("n > 0");
    total.scale(1.0 / n as f32)
}
