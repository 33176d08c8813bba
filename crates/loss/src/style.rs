//! Style loss: how far the image's Gram matrices (feature correlations) are from the style's.

use crate::content::mean_of_layers;
use nst_tensor::ndarray::ArrayD;
use nst_tensor::Var;
use std::sync::Arc;

/// The normalised Gram matrix of a feature map `F_l` (N×C×H×W): `G_l = F_l F_lᵀ / (C·H·W)`,
/// N×C×C. The engine's `gram` is the plain sum `F·Fᵀ` over pixels; dividing by the map's size
/// (the normalisation the classic implementations use) makes style layers of different sizes
/// comparable.
pub fn gram_matrix(features: Var<'_>) -> Var<'_> {
    let s = features.shape();
    let size: usize = s[1..].iter().product();
    features.gram().scale(1.0 / size as f32)
}

/// `L_s = mean_l mean_ij (G_l(x) − A_l)²` with `G_l` the [`gram_matrix`] of layer `l`: the mean
/// over the `C_l²` Gram entries, then over the style layers. `features[l]` is `F_l(x)` on the
/// tape, `targets[l]` the constant target Gram `A_l` (see [`blend_grams`]).
pub fn style_loss<'g>(features: &[Var<'g>], targets: &[Arc<ArrayD<f32>>]) -> Var<'g> {
    mean_of_layers(style_layer_losses(features, targets).into_iter())
}

/// The per-layer terms of [`style_loss`], `mean_ij (G_l(x) − A_l)²`, one per layer.
pub fn style_layer_losses<'g>(features: &[Var<'g>], targets: &[Arc<ArrayD<f32>>]) -> Vec<Var<'g>> {
    assert_eq!(
        features.len(),
        targets.len(),
        "style_loss: one target per layer"
    );
    features
        .iter()
        .zip(targets)
        .map(|(f, a)| {
            let a = f.graph().constant(Arc::clone(a));
            gram_matrix(*f).mse(a)
        })
        .collect()
}

/// The target Gram of several styles, `A = Σ_k b_k G(s_k)` with the blend weights normalised to
/// sum to 1. For a squared-error loss this equals blending the per-style losses, up to a
/// constant. `grams[k]` is style `k`'s Gram for one layer.
///
/// # Panics
/// If the lengths differ, a weight is negative or not finite, or all weights are zero (the CLI
/// validates its `--style-blend` before calling this).
pub fn blend_grams(grams: &[Arc<ArrayD<f32>>], weights: &[f32]) -> Arc<ArrayD<f32>> {
    assert_eq!(
        grams.len(),
        weights.len(),
        "blend_grams: one weight per style"
    );
    assert!(
        weights.iter().all(|w| w.is_finite() && *w >= 0.0),
        "blend_grams: bad weights {weights:?}"
    );
    // Summed in f64: two weights near f32::MAX must not overflow to ∞ (which would make every
    // normalised weight 0 and silently drop the style).
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    assert!(total > 0.0, "blend_grams: weights sum to zero");
    if grams.len() == 1 {
        return Arc::clone(&grams[0]);
    }
    let mut a = ArrayD::zeros(grams[0].raw_dim());
    for (g, w) in grams.iter().zip(weights) {
        a.scaled_add((*w as f64 / total) as f32, g);
    }
    Arc::new(a)
}
