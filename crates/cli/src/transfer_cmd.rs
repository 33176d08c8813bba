//! `nst transfer`: validate the options, prepare the images and the objective, run, write.

use crate::args::{LineSearchArg, OptimizerArg, PoolingArg, TransferArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nst_loss::{Layers, LossWeights, Objective};
use nst_tensor::ndarray::ArrayD;
use nst_transfer::image_io::{self, OutputFormat};
use nst_transfer::init::{initial_image, Init};
use nst_transfer::memory;
use nst_transfer::optim::LineSearch;
use nst_transfer::run::{run, EvalRecord, OptimizerKind};
use nst_vgg::{Pooling, Vgg};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a command ended, for the exit code.
pub enum Ended {
    /// The run finished and wrote its output.
    Done,
    /// The run was interrupted and wrote its best image so far.
    Interrupted,
}

/// Runs `nst transfer`. Every error a user can cause comes back as a message; no output file is
/// written unless the run completes (or is interrupted, which writes the best image so far).
pub fn transfer(args: TransferArgs) -> Result<Ended, String> {
    validate(&args)?;
    use_threads(args.threads)?;
    let say = |msg: String| {
        if !args.quiet {
            eprintln!("{msg}");
        }
    };

    let weights_dir = args.weights.clone().unwrap_or_else(default_weights_dir);
    let vgg = Vgg::load(&weights_dir)
        .map_err(|e| e.to_string())?
        .with_pooling(match args.pooling {
            PoolingArg::Max => Pooling::Max,
            PoolingArg::Avg => Pooling::Avg,
        });
    say(format!(
        "network: {} from {} — preprocessing {}",
        vgg.arch(),
        weights_dir.display(),
        vgg.preprocessing().describe()
    ));

    // Plan the memory from the image headers, before any image is decoded.
    let out_size = image_io::longer_side_size(
        image_io::dimensions(&args.content).map_err(|e| e.to_string())?,
        args.size,
    );
    let style_side = ((args.size as f64 * args.style_scale as f64).round() as u32).max(1);
    let mut style_pixels = 0;
    for path in &args.style {
        let (w, h) = image_io::longer_side_size(
            image_io::dimensions(path).map_err(|e| e.to_string())?,
            style_side,
        );
        style_pixels += w as usize * h as usize;
    }
    let mut optimizer = optimizer_kind(&args);
    // Unknown (no /proc, no cgroup) means unlimited: nothing to check against.
    let budget = args
        .max_memory
        .or_else(memory::default_budget)
        .unwrap_or(u64::MAX);
    let shape = memory::RunShape {
        content_layers: &args.content_layers,
        style_layers: &args.style_layers,
        size: (out_size.0 as usize, out_size.1 as usize),
        style_pixels,
    };
    let plan =
        memory::plan(&vgg, &shape, optimizer, args.iters, budget).map_err(|e| e.to_string())?;
    if let (Some(from), Some(to), OptimizerKind::Lbfgs { history, .. }) =
        (plan.capped_from, plan.history, &mut optimizer)
    {
        *history = to;
        say(format!(
            "memory: L-BFGS history capped at {to} pairs (of {from}) to fit the budget of {}",
            memory::format_bytes(budget)
        ));
    }
    let plan_line = format!(
        "plan: {}×{} px, estimated peak {} of a {} budget{}",
        out_size.0,
        out_size.1,
        memory::format_bytes(plan.peak_bytes),
        if budget == u64::MAX {
            "unknown".to_string()
        } else {
            memory::format_bytes(budget)
        },
        plan.history
            .map_or(String::new(), |h| format!(", L-BFGS history {h}"))
    );
    if args.dry_run {
        println!("{plan_line}");
        return Ok(Ended::Done);
    }
    say(plan_line);

    let content_img = image_io::resize_longer_side(
        &image_io::load(&args.content).map_err(|e| e.to_string())?,
        args.size,
    );
    let content = image_io::to_variable(&content_img);
    let mut style_imgs = Vec::new();
    for path in &args.style {
        style_imgs.push(image_io::resize_longer_side(
            &image_io::load(path).map_err(|e| e.to_string())?,
            style_side,
        ));
    }
    let styles: Vec<ArrayD<f32>> = style_imgs.iter().map(image_io::to_variable).collect();
    let blend = args
        .style_blend
        .clone()
        .unwrap_or_else(|| vec![1.0; styles.len()]);

    let defaults = LossWeights::default_for(vgg.preprocessing());
    let weights = LossWeights {
        content: args.content_weight.unwrap_or(defaults.content),
        style: args.style_weight.unwrap_or(defaults.style),
        tv: args.tv_weight,
    };
    let layers = Layers {
        content: args.content_layers.clone(),
        style: args.style_layers.clone(),
    };
    let objective = Objective::new(&vgg, &content, &styles, &blend, layers, weights)
        .map_err(|e| e.to_string())?;
    let x0 = initial_image(
        &Init::parse(&args.init),
        &content,
        &style_imgs[0],
        args.seed,
    )
    .map_err(|e| e.to_string())?;

    say(format!(
        "{}×{} px, {} evaluations of {}, α={} β={} γ={}",
        content.shape()[3],
        content.shape()[2],
        args.iters,
        optimizer,
        weights.content,
        weights.style,
        weights.tv
    ));

    let mut log = match &args.log_json {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let progress = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar =
            ProgressBar::with_draw_target(Some(args.iters as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} evals  {msg}  [{elapsed_precise}, ETA {eta}]",
            )
            .expect("a valid template"),
        );
        bar
    };

    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupt);
        // Failing to install the handler (e.g. one is already installed) only loses Ctrl-C
        // handling, not the run.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let to_write = |x: &ArrayD<f32>, path: &Path| -> ArrayD<f32> {
        let raw = OutputFormat::from_path(path).is_ok_and(|f| f == OutputFormat::Npy);
        if args.original_colors && !raw {
            nst_transfer::color::keep_content_colors(x, &content)
        } else {
            x.clone()
        }
    };
    let started = Instant::now();
    let mut observe = |r: &EvalRecord, x: &ArrayD<f32>| -> Result<(), String> {
        progress.set_position(r.eval as u64);
        progress.set_message(format!(
            "loss {:.4e} (content {:.3e}, style {:.3e})",
            r.total, r.content, r.style
        ));
        if let Some(log) = log.as_mut() {
            let line = serde_json::json!({
                "eval": r.eval, "total": r.total, "content": r.content,
                "style": r.style, "tv": r.tv, "ms": r.ms,
            });
            writeln!(log, "{line}")
                .and_then(|_| log.flush())
                .map_err(|e| format!("writing the JSON log: {e}"))?;
        }
        if let Some(every) = args.save_every {
            if r.eval.is_multiple_of(every) {
                let path = numbered(&args.output, r.eval);
                image_io::save(&path, &to_write(x, &path)).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    };
    let outcome = run(
        &objective,
        x0,
        optimizer,
        args.iters,
        &mut observe,
        &interrupt,
    )?;
    progress.finish_and_clear();

    let (image, ended) = if outcome.interrupted {
        (&outcome.best_image, Ended::Interrupted)
    } else {
        (&outcome.final_image, Ended::Done)
    };
    image_io::save(&args.output, &to_write(image, &args.output)).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    match (&ended, outcome.last) {
        (Ended::Interrupted, _) => say(format!(
            "interrupted after {} evaluations; wrote the best image so far (loss {:.4e}) to {}",
            outcome.evals,
            outcome.best.map_or(f32::NAN, |b| b.total),
            args.output.display()
        )),
        (Ended::Done, Some(r)) => say(format!(
            "{} evaluations in {:.1} s ({:.0} ms each): loss {:.4e} (content {:.4e}, style {:.4e}, tv {:.4e}) → {}",
            outcome.evals,
            secs,
            1e3 * secs / outcome.evals.max(1) as f64,
            r.total,
            r.content,
            r.style,
            r.tv,
            args.output.display()
        )),
        (Ended::Done, None) => say(format!("no evaluation made → {}", args.output.display())),
    }
    Ok(ended)
}

/// The optimizer and its settings, from the options.
fn optimizer_kind(args: &TransferArgs) -> OptimizerKind {
    match args.optimizer {
        OptimizerArg::Lbfgs => OptimizerKind::Lbfgs {
            history: args.history,
            line_search: match args.line_search {
                LineSearchArg::StrongWolfe => LineSearch::StrongWolfe,
                LineSearchArg::None => LineSearch::None,
            },
        },
        OptimizerArg::Adam => OptimizerKind::Adam {
            lr: args.lr.unwrap_or(0.02),
        },
        OptimizerArg::Gd => OptimizerKind::Gd {
            lr: args.lr.unwrap_or(1e-7),
        },
    }
}

/// Sizes rayon's global pool to `threads` (`--threads`), or leaves its default, one per core.
pub fn use_threads(threads: Option<usize>) -> Result<(), String> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    }
    Ok(())
}

/// `weights/vgg19` if it holds a manifest, else `weights/vgg16`.
pub fn default_weights_dir() -> PathBuf {
    let vgg19 = PathBuf::from("weights/vgg19");
    if vgg19.join("manifest.json").is_file() {
        vgg19
    } else {
        PathBuf::from("weights/vgg16")
    }
}

/// `dir/stem_<eval>.ext` for `dir/stem.ext`.
fn numbered(output: &Path, eval: usize) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    output.with_file_name(format!("{stem}_{eval}{ext}"))
}

/// Checks every option a user can get wrong before any work is done.
fn validate(a: &TransferArgs) -> Result<(), String> {
    let finite_nonneg = |name: &str, v: f32| {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(format!("{name} must be a finite number ≥ 0, got {v}"))
        }
    };
    OutputFormat::from_path(&a.output).map_err(|e| e.to_string())?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(format!(
                "--output: directory {} does not exist",
                dir.display()
            ));
        }
    }
    if a.size == 0 {
        return Err("--size must be at least 1".into());
    }
    if !(a.style_scale.is_finite() && a.style_scale > 0.0) {
        return Err(format!(
            "--style-scale must be positive, got {}",
            a.style_scale
        ));
    }
    if a.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    if a.history == 0 {
        return Err("--history must be at least 1".into());
    }
    if let Some(lr) = a.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("--lr must be positive, got {lr}"));
        }
    }
    for (name, v) in [
        ("--content-weight", a.content_weight),
        ("--style-weight", a.style_weight),
        ("--tv-weight", Some(a.tv_weight)),
    ] {
        if let Some(v) = v {
            finite_nonneg(name, v)?;
        }
    }
    if let Some(blend) = &a.style_blend {
        if blend.len() != a.style.len() {
            return Err(format!(
                "--style-blend has {} weights for {} --style images",
                blend.len(),
                a.style.len()
            ));
        }
        for &w in blend {
            finite_nonneg("each --style-blend weight", w)?;
        }
        if blend.iter().sum::<f32>() <= 0.0 {
            return Err("--style-blend weights must not all be zero".into());
        }
    }
    if a.content_layers.is_empty() || a.style_layers.is_empty() {
        return Err("--content-layers and --style-layers need at least one layer each".into());
    }
    if a.save_every == Some(0) {
        return Err("--save-every must be at least 1".into());
    }
    if a.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    Ok(())
}
