//! `nst transfer`: validate the options, prepare the images and the objective, run, write.

use crate::args::{
    LineSearchArg, OptimizerArg, PreconditionArg, PreserveColorsArg, RunArgs, TransferArgs,
};
use crate::error::CliError;
use crate::report::{counted, Reporter, Stage};
use crate::setup::{self, StyleCache};
use clap::ValueEnum;
use nst_tensor::ndarray::ArrayD;
use nst_transfer::color::PreserveColors;
use nst_transfer::image_io::{self, OutputFormat};
use nst_transfer::init::{initial_image, Init};
use nst_transfer::memory;
use nst_transfer::optim::{LineSearch, Precondition};
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
    use_threads(args.run.threads)?;
    if !args.dry_run {
        image_io::check_writable(&args.output)?;
    }
    let (vgg, network_line) = setup::load_network(&args.objective.terms)?;
    if !args.run.quiet {
        eprintln!("{network_line}");
    }
    let stop = Stop::on_signals();
    let rendered = render(
        &args,
        &vgg,
        &mut StyleCache::default(),
        &stop,
        Partial::WriteBest,
    )?;
    Ok(rendered.ended)
}

/// What [`render`] does with a run stopped by a signal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// Write the best image so far to the output (`nst transfer`).
    WriteBest,
    /// Write nothing, so that the job is redone by the next run (`nst batch`, which skips
    /// existing outputs).
    Discard,
}

/// How a [`render`] ended.
pub struct Rendered {
    /// Done, or stopped by a signal.
    pub ended: Ended,
    /// The last (or, if interrupted, the best) evaluation's total loss.
    pub loss: Option<f32>,
    /// Evaluations made.
    pub evals: usize,
}

/// The stop flag set by SIGINT or SIGTERM, and which of them came.
pub struct Stop {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// SIGINT (Ctrl-C) and SIGTERM (what Slurm, Kubernetes and systemd send) set the flag,
    /// which stops the run, dropping the evaluation in progress at its next layer, and record
    /// which signal came (for the exit code 128 + signal). A second signal ends the process at
    /// once.
    pub fn on_signals() -> Self {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let stop = Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        };
        for sig in [SIGINT, SIGTERM] {
            // Registration fails only for forbidden signals; these two are not. Should it fail
            // anyway, the run loses its graceful stop, not its work.
            let _ = flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop.flag));
            let _ = flag::register_usize(sig, Arc::clone(&stop.signal), sig as usize);
            let _ = flag::register(sig, Arc::clone(&stop.flag));
        }
        stop
    }

    /// Whether a signal came.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// How a run that saw the signal ended.
    pub fn ended(&self) -> Ended {
        Ended::Interrupted(self.signal.load(Ordering::SeqCst) as i32)
    }
}

/// One style transfer with the network `vgg` already loaded: plans its memory, decodes the
/// images (styles through `styles`), runs every coarse-to-fine stage, and writes the output
/// and the pictures of the run. `stop` ends it early; `partial` says whether the best image so
/// far is then written. What `nst transfer` runs once and `nst batch` once per pair.
pub fn render(
    args: &TransferArgs,
    vgg: &nst_vgg::Vgg,
    styles: &mut StyleCache,
    stop: &Stop,
    partial: Partial,
) -> Result<Rendered, CliError> {
    let run_args = &args.run;
    let (stages, budgets) = stages_and_budgets(run_args)?;
    let say = |msg: String| {
        if !run_args.quiet {
            eprintln!("{msg}");
        }
    };
    let Planned {
        out_size,
        optimizer,
        budget,
        plan,
        lines,
    } = plan_run(args, vgg, *budgets.last().expect("at least one stage"))?;
    let plan_line = lines.last().cloned().unwrap_or_default();
    lines[..lines.len() - 1].iter().for_each(|l| say(l.clone()));
    if args.dry_run {
        println!("{plan_line}");
        return Ok(Rendered {
            ended: Ended::Done,
            loss: None,
            evals: 0,
        });
    }
    say(plan_line);

    let limit = setup::decode_limit(Some(budget));
    let colours = run_args.colours();
    let content_raw = image_io::load(&args.objective.content, limit)?;
    let content_seen = colours.prepare_content(&content_raw);
    let (weights, _) = setup::weights_and_layers(&args.objective.terms, vgg);
    let stage_list = stages
        .iter()
        .zip(&budgets)
        .map(|(s, b)| format!("{s} px × {b}"))
        .collect::<Vec<_>>()
        .join(", ");
    say(format!(
        "{}×{} px, {} of {} ({}), α={} β={} γ={}",
        out_size.0,
        out_size.1,
        counted(run_args.iters, "evaluation"),
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
    say(settings_line(args));

    let mut report = Reporter::new(args, out_size)?;
    let (mut evals, mut last) = (0, None);
    let mut x: Option<ArrayD<f32>> = None;
    // The previous stage's content image: its result minus this is what the stage changed.
    let mut previous_content = ArrayD::zeros(vec![0]);
    // The content at the current stage's size in its own colours: where the output's
    // chrominance comes from.
    let mut colour_source = ArrayD::zeros(vec![0]);
    let mut ended = Ended::Done;
    // A stage's result as the image to write: as it is at the output size; from a coarse stage
    // that did not finish (interrupted, or stopped by a non-finite loss), made full size the way
    // the next stage would have started (`stage_content`: that stage's content), with the
    // colours of the content at the output size.
    let at_output_size =
        |x: ArrayD<f32>, stage_content: &ArrayD<f32>, colour_source: &mut ArrayD<f32>| {
            if x.shape()[2..] == [out_size.1 as usize, out_size.0 as usize] {
                return x;
            }
            *colour_source = variable_at(&content_raw, run_args.size);
            let full = variable_at(&content_seen, run_args.size);
            scales::next_stage_start(&x, stage_content, &full)
        };
    for (stage, (&side, &budget)) in stages.iter().zip(&budgets).enumerate() {
        // The content as the optimisation sees it.
        let content = variable_at(&content_seen, side);
        colour_source = if colours == PreserveColors::Luminance {
            variable_at(&content_raw, side)
        } else {
            content.clone()
        };
        let (w, h) = (content.shape()[3] as u32, content.shape()[2] as u32);
        // Tiles only where the stage is larger than one tile.
        let tile = plan.tile.filter(|&t| side as usize > t);
        let objective = setup::build_objective(
            &args.objective,
            colours,
            vgg,
            (&content, &content_raw),
            (side, tile),
            styles,
            limit,
        )?;
        let x0 = match x.take() {
            None => {
                let how = (&args.objective.terms, colours);
                let first_style = &args.objective.style[0];
                let style0 = styles.image_for(how, first_style, &content_raw, side, limit)?;
                initial_image(
                    &Init::parse(&run_args.init),
                    &content,
                    &style0,
                    run_args.seed,
                    limit,
                )?
            }
            Some(previous) => scales::next_stage_start(&previous, &previous_content, &content),
        };
        previous_content = content.clone();
        let at = Stage {
            index: stage,
            count: stages.len(),
            size: (w, h),
        };
        let mut observe = |r: &EvalRecord, x: &ArrayD<f32>| {
            report.observe(&at, evals + r.eval, r, x, &colour_source)
        };
        let outcome = run(&objective, x0, optimizer, budget, &mut observe, &stop.flag)?;
        evals += outcome.evals;
        if let Some(bad) = outcome.non_finite {
            report.finish();
            let mut kept = String::new();
            if let (Some(b), Partial::WriteBest) = (outcome.best, partial) {
                let image =
                    at_output_size(outcome.best_image, &previous_content, &mut colour_source);
                image_io::save(
                    &args.output,
                    &report.image_to_write(&image, &colour_source, &args.output),
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
            ended = stop.ended();
            break;
        }
        last = outcome.last;
        x = Some(outcome.final_image);
    }
    report.finish();
    let rendered = Rendered {
        loss: last.map(|r| r.total),
        evals,
        ended,
    };
    if matches!(rendered.ended, Ended::Interrupted(_)) && partial == Partial::Discard {
        return Ok(rendered);
    }

    let x = x.expect("at least one stage ran");
    let image = at_output_size(x, &previous_content, &mut colour_source);
    let written = report.image_to_write(&image, &colour_source, &args.output);
    image_io::save(&args.output, &written)?;
    report.write_pictures(&image, &colour_source, evals)?;
    say(summary_line(
        &rendered.ended,
        last,
        evals,
        report.elapsed_secs(),
        &args.output,
    ));
    Ok(rendered)
}

/// `img` resized to a longer side of `side` px, as the 1×3×H×W variable: the content at one
/// stage's size.
fn variable_at(img: &image::Rgb32FImage, side: u32) -> ArrayD<f32> {
    image_io::to_variable(&image_io::resize_longer_side(img, side))
}

/// The coarse-to-fine stage sizes (`--scales`) and the evaluations each gets: at least one per
/// stage, so with fewer evaluations than stages the coarsest stages are dropped.
fn stages_and_budgets(args: &RunArgs) -> Result<(Vec<u32>, Vec<usize>), CliError> {
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
            "interrupted after {}; wrote the best image so far (loss {:.4e}) to {}",
            counted(evals, "evaluation"),
            best.map_or(f32::NAN, |b| b.total),
            output.display()
        ),
        (Ended::Done, Some(r)) => format!(
            "{} in {secs:.1} s ({:.0} ms each): loss {:.4e} (content {:.4e}, \
             style {:.4e}, tv {:.4e}) → {}",
            counted(evals, "evaluation"),
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
    let out_size = image_io::longer_side_size(
        image_io::dimensions(&args.objective.content)?,
        args.run.size,
    );
    let style_side = setup::style_side(&args.objective.terms, args.run.size);
    let mut style_pixels = 0;
    for path in &args.objective.style {
        let (w, h) = image_io::longer_side_size(image_io::dimensions(path)?, style_side);
        style_pixels += w as usize * h as usize;
    }
    let mut optimizer = optimizer_kind(&args.run);
    // Unknown (no /proc, no cgroup) means unlimited: nothing to check against.
    let (budget, source) =
        memory::budget(args.run.max_memory).map_or((u64::MAX, None), |(b, s)| (b, Some(s)));
    let shape = memory::RunShape {
        content_layers: &args.objective.terms.content_layers,
        style_layers: &args.objective.terms.style_layers,
        size: (out_size.0 as usize, out_size.1 as usize),
        style_pixels,
        tile: args.run.tile.map(|t| t as usize),
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
        "plan: {}×{} px, estimated peak {} of {}{}{}",
        out_size.0,
        out_size.1,
        memory::format_bytes(plan.peak_bytes),
        match source {
            Some(s) => format!(
                "a {} budget ({})",
                memory::format_bytes(budget),
                s.describe()
            ),
            None => "an unknown budget".to_string(),
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
        o.terms.style_scale,
        args.run.init,
        match args.run.colours() {
            PreserveColors::None => "from the optimisation",
            PreserveColors::Post => "the content's, after the transfer (post)",
            PreserveColors::Luminance => "the content's, luminance-only transfer",
            PreserveColors::Histogram => "the content's, styles' histograms matched",
        },
        o.terms.content_layers.join(","),
        o.terms.style_layers.join(","),
        o.terms.pooling
    )
}

/// The optimizer and its settings, from the options.
fn optimizer_kind(args: &RunArgs) -> OptimizerKind {
    match args.optimizer {
        OptimizerArg::Lbfgs => OptimizerKind::Lbfgs {
            history: args.history,
            line_search: match args.line_search {
                LineSearchArg::StrongWolfe => LineSearch::StrongWolfe,
                LineSearchArg::None => LineSearch::None,
            },
            precondition: match args.precondition {
                PreconditionArg::Multiscale => Precondition::Multiscale,
                PreconditionArg::None => Precondition::None,
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

/// The most worker threads `--threads` accepts: far more than the cores of any server this
/// runs on, and few enough to start at once (a typo of 100000 took minutes to fail).
const MAX_THREADS: usize = 1024;

/// Checks a `--threads` value: 1 to [`MAX_THREADS`] (rayon would read 0 as "the default").
fn check_threads(threads: Option<usize>) -> Result<(), CliError> {
    match threads {
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) if n > MAX_THREADS => {
            Err(format!("--threads {n}: at most {MAX_THREADS} worker threads").into())
        }
        _ => Ok(()),
    }
}

/// Sizes rayon's global pool to `threads` (`--threads`), or leaves its default, one per core.
pub fn use_threads(threads: Option<usize>) -> Result<(), CliError> {
    check_threads(threads)?;
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
    for (name, path) in [
        ("--output", Some(&a.output)),
        ("--progress-grid", a.progress_grid.as_ref()),
        ("--plot", a.plot.as_ref()),
        ("--log-json", a.log_json.as_ref()),
    ] {
        // A directory of that name would make the final rename fail after the whole run.
        if let Some(p) = path.filter(|p| p.is_dir()) {
            return Err(format!("{name} {}: is a directory", p.display()).into());
        }
        if let Some(dir) = path
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
        {
            if !dir.is_dir() {
                return Err(format!("{name}: directory {} does not exist", dir.display()).into());
            }
        }
    }
    if let Some(grid) = &a.progress_grid {
        if OutputFormat::from_path(grid).ok() != Some(OutputFormat::Png) {
            return Err(format!("--progress-grid {}: must be a .png file", grid.display()).into());
        }
    }
    if let Some(plot) = &a.plot {
        if !plot
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        {
            return Err(format!("--plot {}: must be an .svg file", plot.display()).into());
        }
    }
    if a.save_every == Some(0) {
        return Err("--save-every must be at least 1".into());
    }
    validate_run(&a.run)
}

/// Checks the options of one run (shared with `nst batch`).
pub fn validate_run(a: &RunArgs) -> Result<(), CliError> {
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
    if a.original_colors
        && !matches!(
            a.preserve_colors,
            PreserveColorsArg::None | PreserveColorsArg::Post
        )
    {
        let name = a
            .preserve_colors
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string());
        return Err(format!(
            "--original-colors is short for --preserve-colors post; it cannot be combined \
             with --preserve-colors {name}"
        )
        .into());
    }
    if a.print_every == Some(0) {
        return Err("--print-every must be at least 1".into());
    }
    check_threads(a.threads)?;
    stages_and_budgets(a)?;
    Ok(())
}
