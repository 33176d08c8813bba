//! The optimizers on functions whose minima are known.

use nst_transfer::optim::{Adam, Eval, GradientDescent, Lbfgs, LineSearch, Multiscale, Optimizer};

/// Rosenbrock in `n` dimensions: `Σ 100(x_{i+1} − x_i²)² + (1 − x_i)²`, minimum 0 at all ones.
fn rosenbrock(x: &[f32]) -> (f32, Vec<f32>) {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut f = 0.0;
    let mut g = vec![0.0; x.len()];
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        f += 100.0 * a * a + b * b;
        g[i] += -400.0 * a * x[i] - 2.0 * b;
        g[i + 1] += 200.0 * a;
    }
    (f as f32, g.into_iter().map(|v| v as f32).collect())
}

/// A badly scaled quadratic `Σ s_i x_i² / 2` with curvatures from 1 to 1e4 (like image pixels
/// seen through a network: large gradients, very different scales).
fn quadratic(x: &[f32]) -> (f32, Vec<f32>) {
    let scales = |i: usize| 10f64.powf(4.0 * i as f64 / (x.len() - 1) as f64);
    let f: f64 = x
        .iter()
        .enumerate()
        .map(|(i, &v)| 0.5 * scales(i) * (v as f64).powi(2))
        .sum();
    (
        f as f32,
        x.iter()
            .enumerate()
            .map(|(i, &v)| (scales(i) * v as f64) as f32)
            .collect(),
    )
}

/// Runs `opt` on `func` for `budget` evaluations; returns the final point, the values seen and
/// the evaluations used.
fn minimize(
    opt: &mut dyn Optimizer,
    func: fn(&[f32]) -> (f32, Vec<f32>),
    x0: Vec<f32>,
    budget: usize,
) -> (Vec<f32>, Vec<f32>, usize) {
    let mut x = x0;
    let mut seen = Vec::new();
    let mut f = |xs: &[f32]| {
        if seen.len() >= budget {
            return None;
        }
        let (v, g) = func(xs);
        seen.push(v);
        Some((v, g))
    };
    let eval: &mut Eval = &mut f;
    opt.minimize(&mut x, eval);
    let n = seen.len();
    (x, seen, n)
}

#[test]
fn lbfgs_with_strong_wolfe_solves_rosenbrock() {
    let mut opt = Lbfgs {
        history: 10,
        line_search: LineSearch::StrongWolfe,
        metric: None,
    };
    let (x, seen, n) = minimize(&mut opt, rosenbrock, vec![-1.2, 1.0, -1.2, 1.0], 200);
    assert!(n <= 200);
    let final_f = rosenbrock(&x).0;
    assert!(
        final_f < 1e-6,
        "f = {final_f} after {n} evaluations (first {})",
        seen[0]
    );
    assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-2), "{x:?}");
}

#[test]
fn the_budget_counts_line_search_evaluations_and_is_never_exceeded() {
    for budget in [1, 2, 3, 7, 30] {
        let mut opt = Lbfgs {
            history: 5,
            line_search: LineSearch::StrongWolfe,
            metric: None,
        };
        let (_, _, n) = minimize(&mut opt, rosenbrock, vec![-1.2, 1.0], budget);
        assert_eq!(
            n, budget,
            "L-BFGS used {n} evaluations of a budget of {budget}"
        );
    }
}

#[test]
fn lbfgs_without_line_search_does_not_blow_up() {
    let mut opt = Lbfgs {
        history: 100,
        line_search: LineSearch::None,
        metric: None,
    };
    let x0: Vec<f32> = (0..50).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
    let f0 = quadratic(&x0).0;
    let (x, seen, _) = minimize(&mut opt, quadratic, x0, 300);
    assert!(
        seen.iter().all(|v| v.is_finite()),
        "a non-finite loss was evaluated"
    );
    let fx = quadratic(&x).0;
    assert!(fx < 1e-3 * f0, "from {f0} to only {fx}");
}

#[test]
fn adam_and_gradient_descent_descend() {
    let x0 = vec![0.5f32; 8];
    let f0 = quadratic(&x0).0;
    let (x, _, n) = minimize(&mut Adam { lr: 0.01 }, quadratic, x0.clone(), 500);
    assert_eq!(n, 500);
    assert!(quadratic(&x).0 < 1e-2 * f0);
    // GD is stable below 2/L = 2e-4 here.
    let (x, _, _) = minimize(&mut GradientDescent { lr: 1.5e-4 }, quadratic, x0, 3000);
    assert!(quadratic(&x).0 < 0.1 * f0);
}

#[test]
fn one_gradient_descent_step_is_exactly_x_minus_lr_grad() {
    let x0 = vec![0.3f32, -0.7, 1.1];
    let (x, _, n) = minimize(&mut GradientDescent { lr: 0.01 }, rosenbrock, x0.clone(), 1);
    assert_eq!(n, 1);
    let g = rosenbrock(&x0).1;
    for i in 0..3 {
        assert_eq!(x[i], (x0[i] as f64 - 0.01f32 as f64 * g[i] as f64) as f32);
    }
}

/// Image shape of the preconditioned tests: 3 planes of 13 × 10 (odd, not a multiple of 4).
const IMAGE: (usize, usize, usize) = (3, 13, 10);

#[test]
fn lbfgs_with_the_multiscale_metric_solves_an_image_shaped_quadratic() {
    // Fixed unit steps converge more slowly (as in the test without a metric above).
    for (line_search, reduction) in [(LineSearch::StrongWolfe, 1e-6), (LineSearch::None, 1e-3)] {
        let (p, h, w) = IMAGE;
        let mut opt = Lbfgs {
            history: 20,
            line_search,
            metric: Some(Multiscale::new(p, h, w)),
        };
        let x0: Vec<f32> = (0..p * h * w)
            .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let f0 = quadratic(&x0).0;
        let (x, seen, n) = minimize(&mut opt, quadratic, x0, 300);
        assert!(seen.iter().all(|v| v.is_finite()), "{line_search:?}");
        let fx = quadratic(&x).0;
        assert!(
            fx < reduction * f0,
            "{line_search:?}: from {f0} to only {fx} in {n} evaluations"
        );
    }
}

#[test]
fn lbfgs_with_the_multiscale_metric_solves_rosenbrock_on_an_image() {
    let (p, h, w) = IMAGE;
    let mut opt = Lbfgs {
        history: 10,
        line_search: LineSearch::StrongWolfe,
        metric: Some(Multiscale::new(p, h, w)),
    };
    let x0: Vec<f32> = (0..p * h * w)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect();
    let (x, _, n) = minimize(&mut opt, rosenbrock, x0, 3000);
    let final_f = rosenbrock(&x).0;
    assert!(final_f < 1e-5, "f = {final_f} after {n} evaluations");
}

#[test]
fn with_the_metric_the_first_trial_step_moves_the_largest_pixel_by_a_half() {
    let (p, h, w) = IMAGE;
    for line_search in [LineSearch::StrongWolfe, LineSearch::None] {
        let mut opt = Lbfgs {
            history: 5,
            line_search,
            metric: Some(Multiscale::new(p, h, w)),
        };
        let x0: Vec<f32> = (0..p * h * w).map(|i| (i % 5) as f32 * 0.01).collect();
        let mut points: Vec<Vec<f32>> = Vec::new();
        let mut f = |xs: &[f32]| {
            if points.len() == 2 {
                return None;
            }
            points.push(xs.to_vec());
            Some(quadratic(xs))
        };
        opt.minimize(&mut x0.clone(), &mut f);
        let largest = points[1]
            .iter()
            .zip(&points[0])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            (largest - 0.5).abs() < 1e-4,
            "{line_search:?}: the first trial moved a pixel by {largest}"
        );
    }
}
