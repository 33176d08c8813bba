//! What a user sees and keeps while `nst transfer` runs: the progress bar (or plain lines when
//! stderr is not a terminal), the JSON log, the intermediate images, the contact sheet
//! (`--progress-grid`), the loss chart (`--plot`), and the form in which images are written
//! (`--preserve-colors`).

use crate::args::TransferArgs;
use crate::error::CliError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nst_tensor::ndarray::ArrayD;
use nst_transfer::contact_sheet::ContactSheet;
use nst_transfer::image_io::{self, OutputFormat};
use nst_transfer::plot::{write_loss_svg, LossPoint};
use nst_transfer::run::EvalRecord;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which coarse-to-fine stage an evaluation belongs to.
pub struct Stage {
    /// 0-based stage number.
    pub index: usize,
    /// How many stages the run has.
    pub count: usize,
    /// The stage's image width and height.
    pub size: (u32, u32),
}

/// Reports every evaluation of a run (see the module documentation).
pub struct Reporter<'a> {
    args: &'a TransferArgs,
    log: Option<BufWriter<File>>,
    progress: ProgressBar,
    plain: PlainProgress,
    started: Instant,
    sheet: Option<ContactSheet>,
    /// Every evaluation's losses, kept only for `--plot`.
    points: Vec<LossPoint>,
}

impl<'a> Reporter<'a> {
    /// Opens the JSON log (if any) and starts the progress display and the clock, for a run
    /// whose output is `out_size` (width, height).
    pub fn new(args: &'a TransferArgs, out_size: (u32, u32)) -> Result<Self, CliError> {
        let log = match &args.log_json {
            Some(path) => Some(BufWriter::new(File::create(path).map_err(|source| {
                CliError::Log {
                    path: path.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        Ok(Reporter {
            args,
            log,
            progress: progress_bar(args),
            plain: PlainProgress::new(args.run.print_every),
            started: Instant::now(),
            sheet: args
                .progress_grid
                .as_ref()
                .map(|_| ContactSheet::new(args.grid.0, args.grid.1, args.run.iters, out_size)),
            points: Vec::new(),
        })
    }

    /// Reports evaluation `eval` (counted over all stages) with its record `r` and image `x`
    /// (of the stage `at`, whose content image in its own colours is `content`).
    pub fn observe(
        &mut self,
        at: &Stage,
        eval: usize,
        r: &EvalRecord,
        x: &ArrayD<f32>,
        content: &ArrayD<f32>,
    ) -> Result<(), CliError> {
        let args = self.args;
        let (w, h) = at.size;
        let stage = if at.count > 1 {
            format!("stage {}/{} ({w}×{h}) ", at.index + 1, at.count)
        } else {
            String::new()
        };
        let status = format!(
            "{stage}loss {:.4e} (content {:.3e}, style {:.3e})",
            r.total, r.content, r.style
        );
        self.progress.set_position(eval as u64);
        if self.progress.is_hidden() && !args.run.quiet && self.plain.due(eval) {
            // Logs and batch jobs: a plain line now and then instead of a bar.
            let elapsed = self.elapsed_secs();
            let eta = elapsed / eval as f64 * args.run.iters.saturating_sub(eval) as f64;
            eprintln!(
                "eval {eval}/{}: {status}, {elapsed:.0} s elapsed, ETA {eta:.0} s",
                args.run.iters
            );
        }
        self.progress.set_message(status);
        if let Some(log) = self.log.as_mut() {
            let line = serde_json::json!({
                "eval": eval, "total": r.total, "content": r.content,
                "style": r.style, "tv": r.tv, "ms": r.ms,
                "stage": at.index + 1, "size": [w, h],
            });
            writeln!(log, "{line}")
                .and_then(|_| log.flush())
                .map_err(|source| CliError::Log {
                    path: args.log_json.clone().unwrap_or_default(),
                    source,
                })?;
        }
        if args.plot.is_some() {
            self.points.push(LossPoint {
                eval,
                total: r.total,
                content: r.content,
                style: r.style,
                tv: r.tv,
                stage: at.index + 1,
                size: at.size,
            });
        }
        if self.sheet.as_ref().is_some_and(|s| s.wants(eval)) {
            let shown = self.image_to_write(x, content, Path::new("cell.png"));
            self.sheet.as_mut().expect("checked").observe(eval, &shown);
        }
        if let Some(every) = args.save_every {
            if eval.is_multiple_of(every) {
                let path = numbered(&args.output, eval);
                image_io::save(&path, &self.image_to_write(x, content, &path))?;
            }
        }
        Ok(())
    }

    /// The image as it is written to `path`: with the chrominance of `content` under
    /// `--preserve-colors post` or `luminance` (except raw `.npy` output, which is the
    /// optimisation variable), else as it is.
    pub fn image_to_write(
        &self,
        x: &ArrayD<f32>,
        content: &ArrayD<f32>,
        path: &Path,
    ) -> ArrayD<f32> {
        let raw = OutputFormat::from_path(path).is_ok_and(|f| f == OutputFormat::Npy);
        if self.args.run.colours().recolours_output() && !raw {
            nst_transfer::color::keep_content_colors(x, content)
        } else {
            x.clone()
        }
    }

    /// Writes the contact sheet (`--progress-grid`) with `output` (the result, before
    /// recolouring by `content`) in its last cell after `evals` evaluations, and the loss chart
    /// (`--plot`).
    pub fn write_pictures(
        &mut self,
        output: &ArrayD<f32>,
        content: &ArrayD<f32>,
        evals: usize,
    ) -> Result<(), CliError> {
        if let (Some(sheet), Some(path)) = (self.sheet.take(), &self.args.progress_grid) {
            let shown = self.image_to_write(output, content, path);
            let picture = sheet.finish(&shown, evals);
            image_io::save(path, &image_io::to_variable(&picture))?;
        }
        if let Some(path) = &self.args.plot {
            write_loss_svg(&self.points, path)
                .map_err(|e| CliError::Invalid(format!("--plot {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Seconds since the run started.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Clears the progress bar.
    pub fn finish(&self) {
        self.progress.finish_and_clear();
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

/// The progress bar on stderr, or a hidden one when stderr is not a terminal or with `--quiet`.
fn progress_bar(args: &TransferArgs) -> ProgressBar {
    if args.run.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target(Some(args.run.iters as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} evals  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .expect("a valid template"),
    );
    bar
}

/// When to print a plain progress line (stderr not a terminal): every `--print-every`
/// evaluations, or else every [`PLAIN_PROGRESS_SECS`] seconds.
struct PlainProgress {
    every: Option<usize>,
    last: Instant,
}

/// Seconds between plain progress lines without `--print-every`.
const PLAIN_PROGRESS_SECS: u64 = 10;

impl PlainProgress {
    fn new(every: Option<usize>) -> Self {
        PlainProgress {
            every,
            last: Instant::now(),
        }
    }

    /// Whether evaluation `eval` gets a line.
    fn due(&mut self, eval: usize) -> bool {
        match self.every {
            Some(n) => eval.is_multiple_of(n),
            None if self.last.elapsed().as_secs() >= PLAIN_PROGRESS_SECS => {
                self.last = Instant::now();
                true
            }
            None => false,
        }
    }
}

/// `n` and the noun, plural unless `n` is 1: "1 evaluation", "300 evaluations".
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
