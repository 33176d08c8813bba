//! Criterion benchmark of the L-BFGS step itself: the two-loop recursion over a full history of
//! image-sized vectors, the part of a run that is not the network's evaluation.
//!
//! Run with `cargo bench -p nst-transfer --bench lbfgs`. The objective is a cheap, badly
//! conditioned quadratic on a 512×384×3 vector (`f = ½ Σ dᵢ xᵢ²`, `dᵢ` from 1 to 100), so the
//! time is the optimizer's: 130 evaluations, of which the last 30 or so run with all 100 pairs.

use criterion::{criterion_group, criterion_main, Criterion};
use nst_transfer::optim::{Lbfgs, LineSearch, Multiscale, Optimizer};
use std::time::Duration;

/// Values in a 512×384 RGB image.
const N: usize = 512 * 384 * 3;
/// Evaluations per minimisation.
const EVALS: usize = 130;

fn bench_lbfgs(c: &mut Criterion) {
    let d: Vec<f32> = (0..N)
        .map(|i| 1.0 + (i * 7919 % 1000) as f32 / 10.0)
        .collect();
    let x0: Vec<f32> = (0..N)
        .map(|i| (i * 104_729 % 991) as f32 / 991.0 - 0.5)
        .collect();
    let mut group = c.benchmark_group("lbfgs");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(20));
    // The classic metric, and the multiscale one (`optim::Multiscale`: a few passes more per
    // step).
    for (name, metric) in [
        ("history_100", None),
        ("history_100_multiscale", Some(Multiscale::new(3, 384, 512))),
    ] {
        group.bench_function(format!("130_evaluations/512x384x3/{name}"), |bench| {
            bench.iter(|| {
                let mut x = x0.clone();
                let mut calls = 0;
                let mut f = |x: &[f32]| {
                    calls += 1;
                    if calls > EVALS {
                        return None;
                    }
                    let loss: f64 = x
                        .iter()
                        .zip(&d)
                        .map(|(x, d)| 0.5 * (d * x * x) as f64)
                        .sum();
                    let grad = x.iter().zip(&d).map(|(x, d)| d * x).collect();
                    Some((loss as f32, grad))
                };
                let mut lbfgs = Lbfgs {
                    history: 100,
                    line_search: LineSearch::StrongWolfe,
                    metric: metric.clone(),
                };
                lbfgs.minimize(&mut x, &mut f);
                x
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_lbfgs);
criterion_main!(benches);
