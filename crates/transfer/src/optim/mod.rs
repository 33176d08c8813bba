//! Minimisers of a function given by its value and gradient, on a flat `f32` vector.
//!
//! Every optimizer gets `x` (the starting point, updated in place) and an evaluation callback
//! `f(x) → Some((L, ∇L))`. The callback returns `None` when the run must stop — the evaluation
//! budget is spent or the user interrupted — and the optimizer then returns at once, leaving in
//! `x` its last accepted iterate. Budgets therefore count evaluations, line-search ones included,
//! and are enforced by the caller (see `run.rs`), not by each optimizer.
//!
//! Scalars (dot products, step lengths) are f64; vectors are f32.

use rayon::prelude::*;

mod adam;
mod gd;
mod lbfgs;
mod line_search;

pub use adam::Adam;
pub use gd::GradientDescent;
pub use lbfgs::{Lbfgs, LineSearch};

/// The evaluation callback: `Some((L(x), ∇L(x)))`, or `None` to stop.
pub type Eval<'a> = dyn FnMut(&[f32]) -> Option<(f32, Vec<f32>)> + 'a;

/// A minimiser (see the module documentation).
pub trait Optimizer {
    /// Minimises from `x` until `f` returns `None` (or the method cannot make progress, e.g. a
    /// zero gradient); `x` ends at the last accepted iterate.
    fn minimize(&mut self, x: &mut [f32], f: &mut Eval);
}

/// Length of the pieces [`dot`] and [`axpy`] split their vectors into, one rayon task each. Fixed,
/// so that a dot product — the pieces' sums added in order — is the same for any thread count.
/// 2¹⁴ values (64 KiB per vector) keep each task long enough to pay for itself.
const PIECE: usize = 1 << 14;

/// `Σ a_i b_i`, accumulated in f64: each piece of [`PIECE`] values in parallel, then the pieces'
/// sums in order. The L-BFGS direction makes two of these and two [`axpy`]s per stored pair (up
/// to 100 pairs of image-sized vectors per step), which on one thread took a noticeable share of
/// a large run.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    let pieces: Vec<f64> = a
        .par_chunks(PIECE)
        .zip(b.par_chunks(PIECE))
        .map(|(a, b)| dot_piece(a, b))
        .collect();
    pieces.iter().sum()
}

/// Partial sums [`dot_piece`] keeps apart.
const DOT_LANES: usize = 8;

/// `Σ a_i b_i` of one piece in f64, in [`DOT_LANES`] partial sums (sum `l` takes the values
/// `i ≡ l` mod 8, in order), added together at the end. One running sum made every addition wait
/// for the one before — four cycles a value, half the speed the memory delivers the vectors at
/// (BENCHMARKS.md); eight independent ones let the additions overlap.
fn dot_piece(a: &[f32], b: &[f32]) -> f64 {
    let mut sums = [0.0f64; DOT_LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % DOT_LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body
        .chunks_exact(DOT_LANES)
        .zip(b_body.chunks_exact(DOT_LANES))
    {
        for l in 0..DOT_LANES {
            sums[l] += x[l] as f64 * y[l] as f64;
        }
    }
    for (l, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        sums[l] += *x as f64 * *y as f64;
    }
    sums.iter().sum()
}

/// `y ← y + alpha·x`, in parallel pieces.
pub(crate) fn axpy(alpha: f64, x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(PIECE)
        .zip(x.par_chunks(PIECE))
        .for_each(|(y, x)| {
            for (yi, xi) in y.iter_mut().zip(x) {
                *yi = (*yi as f64 + alpha * *xi as f64) as f32;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several pieces and a short last one: the dot product equals the plain f64 sum to
    /// rounding, and gives the same bits on 1 and 3 threads; axpy equals the loop it replaces.
    #[test]
    fn dot_and_axpy_in_pieces_match_the_serial_loops_on_any_thread_count() {
        let n = 3 * PIECE + 123;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 991) as f32 / 991.0 - 0.3)
            .collect();
        let serial: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut y = b.clone();
                axpy(-0.75, &a, &mut y);
                (dot(&a, &b), y)
            })
        };
        let (one, y_one) = on(1);
        let (three, y_three) = on(3);
        assert_eq!(one.to_bits(), three.to_bits());
        assert!(
            (one - serial).abs() <= 1e-12 * serial.abs(),
            "{one} vs {serial}"
        );
        let want: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*y as f64 - 0.75 * *x as f64) as f32)
            .collect();
        assert_eq!(y_one, want);
        assert_eq!(y_three, want);
    }
}
