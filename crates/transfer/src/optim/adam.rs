//! Adam (Kingma & Ba, 2015).

use super::{Eval, Optimizer};

/// Adam with `β1 = 0.9`, `β2 = 0.999`, `ε = 1e-8`: with `m`, `v` running means of `g` and `g²`,
/// `x ← x − lr · m̂ / (√v̂ + ε)`, where `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)` undo the zero start.
/// One update per evaluation. In [0, 1] image space a learning rate of ~0.02 suits (10 in 0–255
/// space, as the classic implementations use, is 10/255 ≈ 0.04 here).
pub struct Adam {
    /// The learning rate.
    pub lr: f32,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl Optimizer for Adam {
    fn minimize(&mut self, x: &mut [f32], f: &mut Eval) {
        let mut m = vec![0.0f64; x.len()];
        let mut v = vec![0.0f64; x.len()];
        let mut t = 0;
        while let Some((_, g)) = f(x) {
            t += 1;
            let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
            for i in 0..x.len() {
                let gi = g[i] as f64;
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * gi;
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * gi * gi;
                let step = self.lr as f64 * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                x[i] = (x[i] as f64 - step) as f32;
            }
        }
    }
}
