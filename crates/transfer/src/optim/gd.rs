//! Plain gradient descent.

use super::{axpy, Eval, Optimizer};

/// `x ← x − lr·∇L(x)` after every evaluation.
pub struct GradientDescent {
    /// The step size `lr`.
    pub lr: f32,
}

impl Optimizer for GradientDescent {
    fn minimize(&mut self, x: &mut [f32], f: &mut Eval) {
        while let Some((_, g)) = f(x) {
            axpy(-(self.lr as f64), &g, x);
        }
    }
}
