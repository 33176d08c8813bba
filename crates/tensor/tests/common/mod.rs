//! Helpers shared by the tensor tests: seeded random arrays and a finite-difference gradient
//! check.
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use nst_tensor::{Graph, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A seeded generator, so every failure reproduces.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> ArrayD<f32> {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

/// Uniform values in [-1, 1) as a flat vector (for the kernels, which take slices).
pub fn random_vec(rng: &mut ChaCha8Rng, shape: &[usize]) -> Vec<f32> {
    random(rng, shape).into_raw_vec_and_offset().0
}

/// Values in [-1, 1) at least `gap` away from each other's ±`gap` neighbourhoods *and* from 0:
/// a shuffled grid, so a finite-difference step of less than `gap/2` never crosses a kink of
/// ReLU or a tie of max pooling.
pub fn well_separated(rng: &mut ChaCha8Rng, shape: &[usize], gap: f32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let mut vals: Vec<f32> = (0..n)
        .map(|i| (i as f32 - n as f32 / 2.0 + 0.5) * gap)
        .collect();
    for i in (1..n).rev() {
        vals.swap(i, rng.random_range(0..=i));
    }
    ArrayD::from_shape_vec(IxDyn(shape), vals).unwrap()
}

/// Relative error of the analytic gradient in norm: ‖num − ana‖ / max(‖num‖, ‖ana‖, 1e-3).
pub fn rel_err(num: &[f64], ana: &[f32]) -> f64 {
    let diff: f64 = num
        .iter()
        .zip(ana)
        .map(|(n, a)| (n - *a as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let nn: f64 = num.iter().map(|n| n * n).sum::<f64>().sqrt();
    let na: f64 = ana.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
    diff / nn.max(na).max(1e-3)
}

/// Central finite differences `(f(x+εe_i) − f(x−εe_i)) / 2ε` of `f` with respect to
/// `params[which]`, every other parameter held fixed.
pub fn numeric_grad(
    params: &[ArrayD<f32>],
    which: usize,
    eps: f32,
    f: &dyn Fn(&Graph, &[Var]) -> f64,
) -> Vec<f64> {
    let eval = |ps: &[ArrayD<f32>]| {
        let g = Graph::new();
        let vars: Vec<Var> = ps.iter().map(|p| g.param(p.clone())).collect();
        f(&g, &vars)
    };
    let mut ps = params.to_vec();
    let n = ps[which].len();
    (0..n)
        .map(|i| {
            let orig = ps[which].as_slice().unwrap()[i];
            ps[which].as_slice_mut().unwrap()[i] = orig + eps;
            let up = eval(&ps);
            ps[which].as_slice_mut().unwrap()[i] = orig - eps;
            let down = eval(&ps);
            ps[which].as_slice_mut().unwrap()[i] = orig;
            (up - down) / (2.0 * eps as f64)
        })
        .collect()
}

/// The tolerance of [`check_grads`]: a correct f32 backward lands near 1e-4 here, while a
/// gradient off by a factor, a sign, a transpose or a missing term lands far above 1e-1.
pub const GRAD_TOL: f64 = 5e-3;

/// Checks the backward of `op` against central differences, for every input: the scalar tested
/// is `Σ op(inputs) ⊙ R` with a fixed random `R`, so every output element's gradient is
/// exercised with a different weight. Returns the worst relative error.
pub fn check_grads(inputs: &[ArrayD<f32>], op: &dyn for<'g> Fn(&[Var<'g>]) -> Var<'g>) -> f64 {
    let out_shape = {
        let g = Graph::new();
        let vars: Vec<Var> = inputs.iter().map(|p| g.param(p.clone())).collect();
        op(&vars).shape()
    };
    let r = Arc::new(random(&mut rng(99), &out_shape));
    let g = Graph::new();
    let vars: Vec<Var> = inputs.iter().map(|p| g.param(p.clone())).collect();
    let grads = g.backward(weighted(&g, &vars, op, &r));
    let mut worst: f64 = 0.0;
    for (i, v) in vars.iter().enumerate() {
        let ana = grads.get(*v).map(|a| a.as_slice().unwrap().to_vec());
        let ana = ana.unwrap_or_else(|| vec![0.0; inputs[i].len()]);
        let num = numeric_grad(inputs, i, 1e-2, &|g, vs| {
            weighted(g, vs, op, &r).item() as f64
        });
        let err = rel_err(&num, &ana);
        assert!(
            err < GRAD_TOL,
            "input {i} of shape {:?}: relative gradient error {err:.2e} ≥ {GRAD_TOL:.0e}\n\
             numeric  {:?}\nanalytic {:?}",
            inputs[i].shape(),
            &num[..num.len().min(8)],
            &ana[..ana.len().min(8)]
        );
        worst = worst.max(err);
    }
    worst
}

/// `Σ op(vars) ⊙ r` (or a multiple of `op(vars)` when it is already a scalar).
fn weighted<'g>(
    g: &'g Graph,
    vars: &[Var<'g>],
    op: &dyn for<'h> Fn(&[Var<'h>]) -> Var<'h>,
    r: &Arc<ArrayD<f32>>,
) -> Var<'g> {
    let y = op(vars);
    if r.ndim() == 0 {
        y.scale(1.7)
    } else {
        (y * g.constant(Arc::clone(r))).sum()
    }
}
