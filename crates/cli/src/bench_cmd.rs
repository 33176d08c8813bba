//! `nst bench`: where one evaluation's time goes, layer by layer.
//!
//! Runs the default objective (content relu4_2, style relu1_1…relu5_1, the default weights) on
//! deterministic synthetic content, style and evaluated images of the requested size — no image files needed — once to warm
//! up and then `--evals` times on a profiled tape, and reports per network layer (and per kind
//! of loss op) the median forward and backward wall time, the convolution algorithm of each
//! pass, the effective GFLOP/s, and how many independent tasks the layer's forward pass makes.

use crate::args::BenchArgs;
use crate::error::CliError;
use crate::report::counted;
use crate::setup::find_weights;
use crate::transfer_cmd::use_threads;
use nst_loss::{Layers, LossWeights, Objective};
use nst_tensor::kernels::conv::{self, ConvGeometry};
use nst_tensor::kernels::{gemm, isa::Isa};
use nst_tensor::ndarray::{Array4, ArrayD};
use nst_tensor::OpTiming;
use nst_vgg::Vgg;
use serde_json::json;
use std::time::Instant;

/// One row of the report: a network layer, or all the loss ops of one kind.
struct Row {
    name: String,
    forward_ms: Vec<f64>,
    backward_ms: Vec<f64>,
    conv: Option<ConvGeometry>,
}

/// Runs `nst bench`.
pub fn bench(args: BenchArgs) -> Result<(), CliError> {
    use_threads(args.threads)?;
    let (w, h) = args.size;
    let weights_dir = find_weights(args.weights.as_deref())?;
    let vgg = Vgg::load(&weights_dir)?;
    let content = synthetic_image(w, h, 1);
    let style = synthetic_image(w, h, 2);
    let layers = Layers {
        content: vec!["relu4_2".into()],
        style: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
            .map(String::from)
            .to_vec(),
    };
    let weights = LossWeights::default_for(vgg.preprocessing());
    let mut objective = Objective::new(&vgg, &content, &[style], &[1.0], layers, weights)?;
    if args.upright {
        objective = objective.upright();
    }
    let transposed = objective.is_transposed();

    // Evaluated at a third image, so that every term (content included) has a gradient.
    let x = synthetic_image(w, h, 3);
    let _warm_up = objective.evaluate(&x);
    let mut rows: Vec<Row> = Vec::new();
    let mut totals_ms = Vec::new();
    let mut last = None;
    for _ in 0..args.evals {
        let start = Instant::now();
        let (eval, profile) = objective.evaluate_profiled(&x);
        totals_ms.push(start.elapsed().as_secs_f64() * 1e3);
        add_to_rows(&mut rows, &profile);
        last = Some(eval);
    }
    let eval = last.expect("at least one evaluation");
    let evaluation_ms = median(&totals_ms);
    let threads = rayon::current_num_threads();

    let report: Vec<Summary> = rows.iter().map(summarize).collect();
    let sum_ms: f64 = report.iter().map(|r| r.forward_ms + r.backward_ms).sum();
    if args.json {
        let out = json!({
            "size": [w, h],
            "processor": processor(),
            "threads": threads,
            "gemm": gemm::backend().name(),
            "gemm_kernels": gemm::kernel_level(),
            "simd": Isa::detect().name(),
            "conv_simd": Isa::detect().at_most_avx2().name(),
            "network": vgg.arch().to_string(),
            "evals": args.evals,
            "transposed": transposed,
            "evaluation_ms": evaluation_ms,
            "sum_of_layers_ms": sum_ms,
            "loss": {"total": eval.total, "content": eval.content, "style": eval.style, "tv": eval.tv},
            "layers": report.iter().map(Summary::json).collect::<Vec<_>>(),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{} at {w}×{h}{}, {} of {}, median of {} (after one warm-up); \
         GEMM {} ({} kernels), Gram and direct convolution {}, Winograd transforms {}",
        vgg.arch(),
        if transposed {
            format!(" (evaluated transposed, as {h}×{w})")
        } else {
            String::new()
        },
        counted(threads, "thread"),
        processor(),
        counted(args.evals as usize, "evaluation"),
        gemm::backend().name(),
        gemm::kernel_level(),
        Isa::detect().name(),
        Isa::detect().at_most_avx2().name(),
    );
    // The layer column fits the longest name (`conv1_2+relu1_2+pool1`).
    let lw = report
        .iter()
        .map(|r| r.layer.chars().count())
        .max()
        .unwrap_or(0)
        .max(16);
    println!(
        "{:<lw$} {:>10} {:>11}  {:<42} {:>8} {:>6} {:>6}",
        "layer",
        "forward ms",
        "backward ms",
        "algorithm (forward / input gradient)",
        "GFLOP/s",
        "tasks",
        "share"
    );
    for r in &report {
        let conv = r.conv.as_ref();
        println!(
            "{:<lw$} {:>10.1} {:>11.1}  {:<42} {:>8} {:>6} {:>5.1}%",
            r.layer,
            r.forward_ms,
            r.backward_ms,
            conv.map_or("-", |c| c.algorithm.as_str()),
            conv.map_or("-".into(), |c| format!("{:.0}", c.gflops)),
            conv.map_or("-".into(), |c| c.tasks.to_string()),
            100.0 * (r.forward_ms + r.backward_ms) / evaluation_ms,
        );
    }
    println!(
        "loss: total {:.4e} = content {:.4e} (weight {}) + style {:.4e} (weight {}) + tv {:.4e} (weight {})",
        eval.total, eval.content, weights.content, eval.style, weights.style, eval.tv, weights.tv
    );
    println!(
        "evaluation: {evaluation_ms:.1} ms (median); the rows add up to {sum_ms:.1} ms ({:.0}%)",
        100.0 * sum_ms / evaluation_ms
    );
    Ok(())
}

/// The processor the figures were measured on, as `/proc/cpuinfo` names it — "Intel(R) Xeon(R)
/// Processor (family 6, model 207)": the same build runs different kernels (and at different
/// speeds) on different processors, so every report says which one it ran on. Where there is no
/// `/proc/cpuinfo` (not Linux), the architecture's name.
fn processor() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // The first processor's entries: `key<tabs>: value`.
    let field = |key: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name} (family {family}, model {model})")
        }
        (Some(name), _, _) => name,
        _ => std::env::consts::ARCH.to_string(),
    }
}

/// Adds one evaluation's op times to the rows: labelled ops (network layers) by label, the rest
/// (preprocessing and loss ops) by op kind, rows in order of first appearance.
fn add_to_rows(rows: &mut Vec<Row>, profile: &[OpTiming]) {
    let mut this_eval: Vec<(String, f64, f64, Option<ConvGeometry>)> = Vec::new();
    for t in profile.iter().filter(|t| t.op != "leaf") {
        let name = t.label.clone().unwrap_or_else(|| format!("({})", t.op));
        let (f, b) = (
            t.forward.as_secs_f64() * 1e3,
            t.backward.as_secs_f64() * 1e3,
        );
        match this_eval.iter_mut().find(|r| r.0 == name) {
            Some(r) => {
                r.1 += f;
                r.2 += b;
            }
            None => this_eval.push((name, f, b, t.conv)),
        }
    }
    for (name, f, b, conv) in this_eval {
        match rows.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                r.forward_ms.push(f);
                r.backward_ms.push(b);
            }
            None => rows.push(Row {
                name,
                forward_ms: vec![f],
                backward_ms: vec![b],
                conv,
            }),
        }
    }
}

/// A row's medians over the evaluations, and for a convolution what they mean.
struct Summary {
    layer: String,
    forward_ms: f64,
    backward_ms: f64,
    conv: Option<ConvSummary>,
}

/// The convolution columns of a [`Summary`].
struct ConvSummary {
    /// `forward / input gradient` algorithm names (only the forward's if there was no backward).
    algorithm: String,
    /// Effective GFLOP/s: `2·C_out·C_in·k²·H'·W'` per pass over the row's wall time.
    gflops: f64,
    /// Independent tasks of the forward pass ([`conv::forward_tasks`]).
    tasks: usize,
}

fn summarize(r: &Row) -> Summary {
    let (f, b) = (median(&r.forward_ms), median(&r.backward_ms));
    let conv = r.conv.map(|g| {
        let backward = b > 0.0;
        let forward_name = conv::forward_algorithm(&g).name();
        let algorithm = if backward {
            format!("{forward_name} / {}", conv::input_grad_algorithm(&g).name())
        } else {
            forward_name.to_string()
        };
        let passes = if backward { 2.0 } else { 1.0 };
        ConvSummary {
            algorithm,
            gflops: passes * g.flops() / ((f + b) * 1e6),
            tasks: conv::forward_tasks(&g),
        }
    });
    Summary {
        layer: r.name.clone(),
        forward_ms: f,
        backward_ms: b,
        conv,
    }
}

impl Summary {
    /// The row as the JSON object the README documents (`null` for a non-convolution's
    /// algorithm, GFLOP/s and tasks).
    fn json(&self) -> serde_json::Value {
        let c = self.conv.as_ref();
        json!({
            "layer": self.layer,
            "forward_ms": self.forward_ms,
            "backward_ms": self.backward_ms,
            "algorithm": c.map(|c| c.algorithm.clone()),
            "gflops": c.map(|c| c.gflops),
            "tasks": c.map(|c| c.tasks),
        })
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A deterministic 1×3×H×W RGB image in [0, 1]: smooth colour gradients and sinusoidal patterns
/// (different per `seed`) plus a little hashed noise, so every layer sees varied activations.
fn synthetic_image(w: usize, h: usize, seed: u32) -> ArrayD<f32> {
    let f = seed as f32;
    Array4::from_shape_fn((1, 3, h, w), |(_, c, i, j)| {
        let (y, x) = (i as f32 / h as f32, j as f32 / w as f32);
        let wave = ((x * (7.0 + 3.0 * f) + c as f32) * std::f32::consts::TAU).sin()
            * ((y * (5.0 + 2.0 * f)) * std::f32::consts::TAU).cos();
        let hash = (i as u32).wrapping_mul(73_856_093)
            ^ (j as u32).wrapping_mul(19_349_663)
            ^ (c as u32 + 3 * seed).wrapping_mul(83_492_791);
        let noise = (hash % 1000) as f32 / 1000.0 - 0.5;
        (0.5 + 0.3 * wave + 0.1 * (x - y) * (c as f32 - 1.0) + 0.1 * noise).clamp(0.0, 1.0)
    })
    .into_dyn()
}
