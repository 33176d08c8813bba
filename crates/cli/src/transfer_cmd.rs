//! `nst transfer`: validate the options, prepare the images and the objective, run, write.

use crate::args::{LineSearchArg, OptimizerArg, TransferArgs};
use crate::error::CliError;
use crate::report::{Reporter, Stage};
use crate::setup;
use nst_tensor::ndarray::ArrayD;
use nst_transfer::image_io::{self, OutputFormat};
use nst_transfer::init::{initial_image, Init};
use nst_transfer::memory;
use nst_transfer::optim::LineSearch;
use nst_transfer::run::{run, EvalRecord, OptimizerKind};
use nst_transfer::scales;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// How a command ended, for the exit code.
pub enum Ended {
    /// The run finished and wrote its output.
    Done,
    /// The run was stopped by the signal `.0` (SIGINT 2, SIGTERM 15) and wrote its best image
    /// so far.
    Interrupted(i32),
}

/// Runs `nst transfer`. Every error a user can cause comes back as a message; no output file is
/// written unless the run completes (or is interrupted, which writes the best image so far).
pub fn transfer(args: TransferArgs) -> Result<Ended, CliError> {
    validate(&args)?;
    let (stages, budgets) = stages_and_budgets(&args)?;
    use_threads(args.threads)?;
    let say = |msg: String| {
        if !args.quiet {
            eprintln!("{msg}");
        }
    };

    if !args.dry_run {
        image_io::check_writable(&args.output)?;
    }
    let (vgg, network_line) = setup::load_network(&args.objective)?;
    say(network_line);

    let Planned {
        out_size,
        optimizer,
        budget,
        plan,
        lines,
    } = plan_run(&args, &vgg, *budgets.last().expect("at least one stage"))?;
    let plan_line = lines.last().cloned().unwrap_or_default();
    lines[..lines.len() - 1].iter().for_each(|l| say(l.clone()));
    if args.dry_run {
        println!("{plan_line}");
        return Ok(Ended::Done);
    }
    say(plan_line);

    let limit = setup::decode_limit(Some(budget));
    let content_raw = image_io::load(&args.objective.content, limit)?;
    let style_raw = setup::load_styles(&args.objective, None, limit)?;
    let (weights, _) = setup::weights_and_layers(&args.objective, &vgg);
    let stage_list = stages
        .iter()
        .zip(&budgets)
        .map(|(s, b)| format!("{s} px × {b}"))
        .collect::<Vec<_>>()
        .join(", ");
    say(format!(
        "{}×{} px, {} evaluations of {} ({}), α={} β={} γ={}",
        out_size.0,
        out_size.1,
        args.iters,
        optimizer,
        if stages.len() > 1 {
            format!("coarse to fine: {stage_list}")
        } else {
            "one scale".to_string()
        },
        weights.content,
        weights.style,
        weights.tv
    ));
    say(settings_line(&args));

    let mut report = Reporter::new(&args)?;
    let (interrupt, signal) = stop_on_signals();
    let (mut evals, mut last) = (0, None);
    let mut x: Option<ArrayD<f32>> = None;
    let mut content = ArrayD::zeros(vec![0]);
    let mut ended = Ended::Done;
    for (stage, (&side, &budget)) in stages.iter().zip(&budgets).enumerate() {
        content = image_io::to_variable(&image_io::resize_longer_side(&content_raw, side));
        let (w, h) = (content.shape()[3] as u32, content.shape()[2] as u32);
        let style_side = setup::style_side(&args.objective, side);
        let style_imgs: Vec<_> = style_raw
            .iter()
            .map(|s| image_io::resize_longer_side(s, style_side))
            .collect();
        // Tiles only where the stage is larger than one tile.
        let tile = plan.tile.filter(|&t| side as usize > t);
        let objective = setup::build_objective(&args.objective, &vgg, &content, &style_imgs, tile)?;
        let x0 = match x.take() {
            None => initial_image(
                &Init::parse(&args.init),
                &content,
                &style_imgs[0],
                args.seed,
                limit,
            )?,
            Some(previous) => image_io::upsample_variable(&previous, w, h),
        };
        let at = Stage {
            index: stage,
            count: stages.len(),
            size: (w, h),
        };
        let mut observe =
            |r: &EvalRecord, x: &ArrayD<f32>| report.observe(&at, evals + r.eval, r, x, &content);
        let outcome = run(&objective, x0, optimizer, budget, &mut observe, &interrupt)?;
        evals += outcome.evals;
        if let Some(bad) = outcome.non_finite {
            report.finish();
            let mut kept = String::new();
            if let Some(b) = outcome.best {
                let image = image_io::upsample_variable(&outcome.best_image, w, h);
                image_io::save(
                    &args.output,
                    &report.image_to_write(&image, &content, &args.output),
                )?;
                kept = format!(
                    "; wrote the best finite image (evaluation {}) to {}",
                    evals - outcome.evals + b.eval,
                    args.output.display()
                );
            }
            return Err(CliError::NonFinite {
                eval: evals - outcome.evals + bad,
                alpha: weights.content,
                beta: weights.style,
                gamma: weights.tv,
                kept,
            });
        }
        if outcome.interrupted {
            last = outcome.best;
            x = Some(outcome.best_image);
            ended = Ended::Interrupted(signal.load(Ordering::SeqCst) as i32);
            break;
        }
        last = outcome.last;
        x = Some(outcome.final_image);
    }
    report.finish();

    // An interrupted coarse stage still gives an output of the requested size.
    let image =
        image_io::upsample_variable(&x.expect("at least one stage ran"), out_size.0, out_size.1);
    if image.shape() != content.shape() {
        let full = image_io::resize_longer_side(&content_raw, args.size);
        content = image_io::to_variable(&full);
    }
    image_io::save(
        &args.output,
        &report.image_to_write(&image, &content, &args.output),
    )?;
    say(summary_line(
        &ended,
        last,
        evals,
        report.elapsed_secs(),
        &args.output,
    ));
    Ok(ended)
}

/// SIGINT (Ctrl-C) and SIGTERM (what Slurm, Kubernetes and systemd send) set the returned flag,
/// which stops the run after the current evaluation with its best image written, and record
/// which signal came (for the exit code 128 + signal). A second signal ends the process at once.
fn stop_on_signals() -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        // Registration fails only for forbidden signals; these two are not. Should it fail
        // anyway, the run loses its graceful stop, not its work.
        let _ = flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop));
        let _ = flag::register_usize(sig, Arc::clone(&which), sig as usize);
        let _ = flag::register(sig, Arc::clone(&stop));
    }
    (stop, which)
}

/// The coarse-to-fine stage sizes (`--scales`) and the evaluations each gets: at least one per
/// stage, so with fewer evaluations than stages the coarsest stages are dropped.
fn stages_and_budgets(args: &TransferArgs) -> Result<(Vec<u32>, Vec<usize>), CliError> {
    let stages = scales::Scales::parse(&args.scales)?.stages(args.size)?;
    let stages = stages[stages.len().saturating_sub(args.iters)..].to_vec();
    let budgets = scales::split_budget(args.iters, stages.len());
    Ok((stages, budgets))
}

/// The line that ends a run: evaluations, time, final losses and where the image went.
fn summary_line(
    ended: &Ended,
    last: Option<EvalRecord>,
    evals: usize,
    secs: f64,
    output: &Path,
) -> String {
    match (ended, last) {
        (Ended::Interrupted(_), best) => format!(
            "interrupted after {evals} evaluations; wrote the best image so far (loss {:.4e}) to {}",
            best.map_or(f32::NAN, |b| b.total),
            output.display()
        ),
        (Ended::Done, Some(r)) => format!(
            "{evals} evaluations in {secs:.1} s ({:.0} ms each): loss {:.4e} (content {:.4e}, \
             style {:.4e}, tv {:.4e}) → {}",
            1e3 * secs / evals.max(1) as f64,
            r.total,
            r.content,
            r.style,
            r.tv,
            output.display()
        ),
        (Ended::Done, None) => format!("no evaluation made → {}", output.display()),
    }
}

/// What the memory plan decided for a run (see [`plan_run`]).
struct Planned {
    /// The output's width and height.
    out_size: (u32, u32),
    /// The optimizer, its L-BFGS history capped if the budget requires.
    optimizer: OptimizerKind,
    /// The memory budget in bytes (`u64::MAX` if unknown).
    budget: u64,
    /// The plan: estimate, tiles, history.
    plan: memory::Plan,
    /// Lines for the user: a history cap, if any, then the plan itself (last).
    lines: Vec<String>,
}

/// Plans the run's memory from the image headers, before any image is decoded
/// (`nst_transfer::memory`): the output size, the budget, the tiles and the L-BFGS history, for
/// a largest (last) stage of `final_evals` evaluations.
fn plan_run(
    args: &TransferArgs,
    vgg: &nst_vgg::Vgg,
    final_evals: usize,
) -> Result<Planned, CliError> {
    let out_size =
        image_io::longer_side_size(image_io::dimensions(&args.objective.content)?, args.size);
    let style_side = setup::style_side(&args.objective, args.size);
    let mut style_pixels = 0;
    for path in &args.objective.style {
        let (w, h) = image_io::longer_side_size(image_io::dimensions(path)?, style_side);
        style_pixels += w as usize * h as usize;
    }
    let mut optimizer = optimizer_kind(args);
    // Unknown (no /proc, no cgroup) means unlimited: nothing to check against.
    let budget = args
        .max_memory
        .or_else(memory::default_budget)
        .unwrap_or(u64::MAX);
    let shape = memory::RunShape {
        content_layers: &args.objective.content_layers,
        style_layers: &args.objective.style_layers,
        size: (out_size.0 as usize, out_size.1 as usize),
        style_pixels,
        tile: args.tile.map(|t| t as usize),
    };
    // The largest stage (the last) sets the peak; its L-BFGS keeps at most one pair per
    // evaluation it gets, and coarse-to-fine gives it only its share of --iters.
    let plan = memory::plan(vgg, &shape, optimizer, final_evals, budget)?;
    let mut lines = Vec::new();
    if let (Some(from), Some(to), OptimizerKind::Lbfgs { history, .. }) =
        (plan.capped_from, plan.history, &mut optimizer)
    {
        *history = to;
        lines.push(format!(
            "memory: L-BFGS history capped at {to} pairs (of {from}) to fit the budget of {}",
            memory::format_bytes(budget)
        ));
    }
    let plan_line = format!(
        "plan: {}×{} px, estimated peak {} of a {} budget{}{}",
        out_size.0,
        out_size.1,
        memory::format_bytes(plan.peak_bytes),
        if budget == u64::MAX {
            "unknown".to_string()
        } else {
            memory::format_bytes(budget)
        },
        plan.tile
            .map_or(", whole-image evaluation".to_string(), |t| format!(
                ", tiles of {t} px"
            )),
        plan.history
            .map_or(String::new(), |h| format!(", L-BFGS history {h}"))
    );
    lines.push(plan_line);
    Ok(Planned {
        out_size,
        optimizer,
        budget,
        plan,
        lines,
    })
}

/// One line with every setting that shapes the result and is not on the other header lines:
/// the styles and their blend, the style scale, the start, the colours.
fn settings_line(args: &TransferArgs) -> String {
    let o = &args.objective;
    let names: Vec<String> = o
        .style
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let blend = o
        .style_blend
        .clone()
        .unwrap_or_else(|| vec![1.0; names.len()]);
    let styles: Vec<String> = names
        .iter()
        .zip(&blend)
        .map(|(n, b)| format!("{n} ×{b}"))
        .collect();
    format!(
        "styles: {} at scale {}; init {}; colours {}; layers content {} style {}; pooling {:?}",
        styles.join(" + "),
        o.style_scale,
        args.init,
        if args.original_colors {
            "the content's (--original-colors)"
        } else {
            "from the optimisation"
        },
        o.content_layers.join(","),
        o.style_layers.join(","),
        o.pooling
    )
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
pub fn use_threads(threads: Option<usize>) -> Result<(), CliError> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::Threads {
                threads: n,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Checks every option a user can get wrong before any work is done.
fn validate(a: &TransferArgs) -> Result<(), CliError> {
    setup::validate_objective(&a.objective)?;
    OutputFormat::from_path(&a.output)?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(format!("--output: directory {} does not exist", dir.display()).into());
        }
    }
    if a.size == 0 {
        return Err("--size must be at least 1".into());
    }
    if a.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    if a.history == 0 {
        return Err("--history must be at least 1".into());
    }
    if let Some(lr) = a.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("--lr must be positive, got {lr}").into());
        }
    }
    if a.optimizer == OptimizerArg::Lbfgs && a.lr.is_some() {
        return Err(
            "--lr has no effect with L-BFGS (its line search chooses each step); \
             drop it, or use --optimizer adam or gd"
                .into(),
        );
    }
    if a.print_every == Some(0) {
        return Err("--print-every must be at least 1".into());
    }
    if a.save_every == Some(0) {
        return Err("--save-every must be at least 1".into());
    }
    if a.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    Ok(())
}
