//! Minimisers of a function given by its value and gradient, on a flat `f32` vector.
//!
//! Every optimizer gets `x` (the starting point, updated in place) and an evaluation callback
//! `f(x) → Some((L, ∇L))`. The callback returns `None` when the run must stop — the evaluation
//! budget is spent or the user interrupted — and the optimizer then returns at once, leaving in
//! `x` its last accepted iterate. Budgets therefore count evaluations, line-search ones included,
//! and are enforced by the caller (see `run.rs`), not by each optimizer.
//!
//! Scalars (dot products, step lengths) are f64; vectors are f32, except L-BFGS's stored pairs,
//! kept in half precision (`half_vector.rs`).

mod adam;
mod gd;
mod half_vector;
mod lbfgs;
mod line_search;
mod multiscale;
mod vector;

pub use adam::Adam;
pub use gd::GradientDescent;
pub use lbfgs::{Lbfgs, LineSearch};
pub use multiscale::Multiscale;
use vector::{axpy, dot, max_abs};

/// The metric L-BFGS's inverse-Hessian guess starts from (see [`Multiscale`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `H₀ = γ·M`, the image pyramid's metric ([`Multiscale`]).
    Multiscale,
    /// `H₀ = γ·I`, as the classic implementations.
    None,
}

/// The evaluation callback: `Some((L(x), ∇L(x)))`, or `None` to stop.
pub type Eval<'a> = dyn FnMut(&[f32]) -> Option<(f32, Vec<f32>)> + 'a;

/// A minimiser (see the module documentation).
pub trait Optimizer {
    /// Minimises from `x` until `f` returns `None` (or the method cannot make progress, e.g. a
    /// zero gradient); `x` ends at the last accepted iterate.
    fn minimize(&mut self, x: &mut [f32], f: &mut Eval);
}
