//! The command line, declared with clap. Every option of `nst transfer` is here with its default
//! and its help text (which the README repeats).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Neural style transfer on the CPU (Gatys, Ecker & Bethge, 2015).
#[derive(Parser, Debug)]
#[command(name = "nst", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render the content image in the style of the style image(s).
    Transfer(Box<TransferArgs>),
    /// Evaluate the objective at an image: its loss terms and, optionally, its gradient.
    Eval(Box<EvalArgs>),
    /// Profile evaluations of the default objective, layer by layer, on synthetic images.
    Bench(BenchArgs),
    /// Render every content × style pair of folders or lists, resumably, on one machine or as
    /// one shard of a cluster job (Slurm array, Kubernetes Indexed Job).
    Batch(Box<BatchArgs>),
    /// Draw the loss curves of a `--log-json` file as an SVG chart.
    Plot(PlotArgs),
}

/// Options of `nst plot`.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// The JSON-lines log a run wrote with `--log-json`.
    #[arg(value_name = "LOG.jsonl")]
    pub log: PathBuf,
    /// The chart to write (SVG).
    #[arg(value_name = "FILE.svg")]
    pub output: PathBuf,
}

/// Options of `nst batch`.
#[derive(clap::Args, Debug)]
pub struct BatchArgs {
    /// Content images: files or directories (their images, sorted); repeatable.
    #[arg(long, value_name = "PATH", num_args = 1.., required_unless_present = "pairs")]
    pub content: Vec<PathBuf>,
    /// Style images: files or directories (their images, sorted); repeatable.
    #[arg(long, value_name = "PATH", num_args = 1.., required_unless_present = "pairs")]
    pub style: Vec<PathBuf>,
    /// A CSV file of `content,style` rows, instead of every content × style.
    #[arg(long, value_name = "FILE.csv", conflicts_with_all = ["content", "style"])]
    pub pairs: Option<PathBuf>,
    /// Where the outputs go, as `<content stem>__<style stem>.<format>`, with the job log
    /// `batch.jsonl` (`batch.shard-K-of-N.jsonl` for a shard); created if missing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Png)]
    pub format: FormatArg,
    /// Take only shard K of N (0-based): the jobs whose number is K mod N [default: from
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shard-count,
    /// else every job].
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Number of shards of a Kubernetes Indexed Job (its `completions`); the shard is
    /// JOB_COMPLETION_INDEX.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "shard"
    )]
    pub shard_count: Option<u64>,
    /// Network, layers and weights, as for `nst transfer`.
    #[command(flatten)]
    pub terms: TermArgs,
    /// The run, as for `nst transfer`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Output format of `nst batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// PNG, 8-bit.
    Png,
    /// JPEG, 8-bit.
    Jpg,
    /// Raw float32 H×W×3.
    Npy,
}

impl FormatArg {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            FormatArg::Png => "png",
            FormatArg::Jpg => "jpg",
            FormatArg::Npy => "npy",
        }
    }
}

/// Options of `nst eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The objective: images, network, layers and weights (the content is resized to the
    /// image's size; styles as in `nst transfer`, relative to the image's longer side).
    #[command(flatten)]
    pub objective: ObjectiveArgs,
    /// The image to evaluate: .png/.jpg (any decodable image) or a float32 H×W×3 .npy.
    #[arg(long, value_name = "X")]
    pub image: PathBuf,
    /// Evaluate in tiles of PX pixels (the same loss and gradient).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub tile: Option<u64>,
    /// Write ∂total/∂X as a float32 H×W×3 .npy (in the image's [0, 1] RGB space).
    #[arg(long, value_name = "G.npy")]
    pub grad_out: Option<PathBuf>,
    /// Print one JSON object: total, content, style, tv and style_layers.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Options of `nst bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Image size, WIDTHxHEIGHT (e.g. 512x384).
    #[arg(long, value_name = "WxH", default_value = "512x384", value_parser = parse_size)]
    pub size: (usize, usize),
    /// Weights directory [default: weights/vgg19 if present, else weights/vgg16].
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Profiled evaluations, after one warm-up; the report gives their medians.
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub evals: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Evaluate a tall image as it is, not transposed (by default a tall image runs as the
    /// wide one it is transposed, the same objective computed faster): to measure the two.
    #[arg(long)]
    pub upright: bool,
}

/// `WIDTHxHEIGHT`, both at least 32 (the network pools four times before relu5_1).
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT (e.g. 512x384), got {s:?}"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| (32..=8192).contains(&n))
            .ok_or_else(|| format!("{v:?} is not a side length between 32 and 8192"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// Optimizer choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// L-BFGS (quasi-Newton), the classic choice.
    Lbfgs,
    /// Adam.
    Adam,
    /// Plain gradient descent.
    Gd,
}

/// L-BFGS step strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LineSearchArg {
    /// Strong-Wolfe line search.
    StrongWolfe,
    /// Fixed unit steps, as the classic implementations (made safe).
    None,
}

/// The metric L-BFGS starts its inverse-Hessian guess from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PreconditionArg {
    /// The image pyramid's metric (full, ½ and ¼ size): broad changes weigh more.
    Multiscale,
    /// The plain metric of the classic implementations and `torch.optim.LBFGS`.
    None,
}

/// Pooling choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    /// Max pooling.
    Max,
    /// Average pooling.
    Avg,
}

/// Options of `nst transfer`.
#[derive(clap::Args, Clone, Debug)]
pub struct TransferArgs {
    /// The objective: images, network, layers and weights.
    #[command(flatten)]
    pub objective: ObjectiveArgs,
    /// Output: .png or .jpg (clamped, 8-bit) or .npy (raw float32 H×W×3 RGB, not clamped).
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,
    /// The run: size, budget, optimizer, start, colours, resources.
    #[command(flatten)]
    pub run: RunArgs,
    /// Also write the image every N evaluations, as `OUT_stem_<eval>.ext`.
    #[arg(long, value_name = "N")]
    pub save_every: Option<usize>,
    /// Write one JSON object per evaluation to FILE.
    #[arg(long, value_name = "FILE")]
    pub log_json: Option<PathBuf>,
    /// Write a contact sheet of the run: the image at evenly spaced evaluations, from the
    /// initial image to the output, each labelled with its evaluation number.
    #[arg(long, value_name = "FILE.png")]
    pub progress_grid: Option<PathBuf>,
    /// Rows and columns of --progress-grid.
    #[arg(
        long,
        value_name = "RxC",
        default_value = "2x5",
        value_parser = parse_grid,
        requires = "progress_grid"
    )]
    pub grid: (u32, u32),
    /// Draw the loss curves (total, content, style, tv; log scale; stage boundaries) as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print the plan (size, memory estimate, budget, tiles, history) and exit without running.
    #[arg(long)]
    pub dry_run: bool,
}

/// `ROWSxCOLUMNS`, each 1–20.
fn parse_grid(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected ROWSxCOLUMNS between 1x1 and 20x20 (e.g. 2x5), got {s:?}");
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=20).contains(n))
    };
    Ok((side(r).ok_or_else(bad)?, side(c).ok_or_else(bad)?))
}

/// How the content's colours are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PreserveColorsArg {
    /// Not at all: the output takes the style's colours.
    None,
    /// After the transfer: the output's luminance with the content's chrominance (YIQ).
    Post,
    /// Luminance-only transfer (style luminance matched to the content's), then the
    /// content's chrominance.
    Luminance,
    /// The styles' colour mean and covariance matched to the content's before the transfer.
    Histogram,
}

/// The options of one run, shared by `nst transfer` and `nst batch`.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Longer side of the output in pixels.
    #[arg(long, value_name = "PX", default_value_t = 512)]
    pub size: u32,
    /// Budget of loss+gradient evaluations (line-search evaluations included).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub iters: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Lbfgs)]
    pub optimizer: OptimizerArg,
    /// Learning rate of adam (default 0.02) or gd (default 1e-7); L-BFGS needs none.
    #[arg(long, allow_hyphen_values = true, value_name = "F")]
    pub lr: Option<f32>,
    /// Coarse to fine: `auto` (from ~256 px, doubling up to --size), `none` (--size only) or
    /// sizes `PX,PX,…` (each at most twice the previous). Each stage starts from the content at
    /// its size plus the previous stage's change, upsampled (bicubic); each stage gets twice the
    /// evaluations of the next.
    #[arg(long, value_name = "auto|none|PX,..", default_value = "none")]
    pub scales: String,
    /// L-BFGS history size.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub history: usize,
    /// L-BFGS step strategy.
    #[arg(long, value_enum, default_value_t = LineSearchArg::StrongWolfe)]
    pub line_search: LineSearchArg,
    /// L-BFGS preconditioner: `multiscale` starts each direction from the image pyramid's
    /// metric and sizes the first step in image units (the same objective, reached in fewer
    /// evaluations); `none` is the classic L-BFGS.
    #[arg(long, value_enum, default_value_t = PreconditionArg::Multiscale)]
    pub precondition: PreconditionArg,
    /// Initial image: content, noise, style, or a PATH (image or .npy of the output's size).
    #[arg(
        long,
        value_name = "content|noise|style|PATH",
        default_value = "content"
    )]
    pub init: String,
    /// Seed of the noise initialisation.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Keep the content's colours (Gatys et al. 2016): after the transfer (`post`), by a
    /// luminance-only transfer, or by matching the styles' colour histograms to the content.
    #[arg(long, value_enum, default_value_t = PreserveColorsArg::None)]
    pub preserve_colors: PreserveColorsArg,
    /// Short for --preserve-colors post.
    #[arg(long)]
    pub original_colors: bool,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Memory budget, e.g. 6G or 512M [default: the smaller of 80% of available memory and
    /// the cgroup limit]. The run's peak is estimated first: the L-BFGS history is shortened to
    /// fit, or the run is refused naming the largest size that fits.
    #[arg(long, value_name = "SIZE", value_parser = nst_transfer::memory::parse_bytes)]
    pub max_memory: Option<u64>,
    /// Evaluate in tiles of PX pixels: the same loss and gradient, with memory that follows the
    /// tile [default: whole images, or tiles chosen to fit --max-memory].
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub tile: Option<u64>,
    /// When stderr is not a terminal (logs, batch jobs), print a progress line every N
    /// evaluations [default: every 10 seconds].
    #[arg(long, value_name = "N")]
    pub print_every: Option<usize>,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The colour setting: `--preserve-colors`, or `post` for `--original-colors`.
    pub fn colours(&self) -> nst_transfer::color::PreserveColors {
        use nst_transfer::color::PreserveColors as P;
        match (self.preserve_colors, self.original_colors) {
            (PreserveColorsArg::None, true) | (PreserveColorsArg::Post, _) => P::Post,
            (PreserveColorsArg::None, false) => P::None,
            (PreserveColorsArg::Luminance, _) => P::Luminance,
            (PreserveColorsArg::Histogram, _) => P::Histogram,
        }
    }
}

/// The options that define the objective, shared by `nst transfer` and `nst eval`.
#[derive(clap::Args, Clone, Debug)]
pub struct ObjectiveArgs {
    /// Content image.
    #[arg(long, value_name = "C")]
    pub content: PathBuf,
    /// Style image; repeat for several styles.
    #[arg(long, value_name = "S", required = true)]
    pub style: Vec<PathBuf>,
    /// Blend weights of the styles, one per --style (normalised to sum 1) [default: equal].
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "W,..",
        value_delimiter = ','
    )]
    pub style_blend: Option<Vec<f32>>,
    /// Network, layers and weights.
    #[command(flatten)]
    pub terms: TermArgs,
}

/// The network and the loss terms: which layers, which weights. Shared by every command that
/// evaluates the objective.
#[derive(clap::Args, Clone, Debug)]
pub struct TermArgs {
    /// Weights directory [default: weights/vgg19 if present, else weights/vgg16].
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Style images are resized so their longer side is size × this factor.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "F",
        default_value_t = 1.0
    )]
    pub style_scale: f32,
    /// Content weight α [default: 5 for Caffe-scale weights, rescaled for others].
    #[arg(long, allow_hyphen_values = true, value_name = "A")]
    pub content_weight: Option<f32>,
    /// Style weight β [default: 500 for Caffe-scale weights, rescaled for others].
    #[arg(long, allow_hyphen_values = true, value_name = "B")]
    pub style_weight: Option<f32>,
    /// Total-variation weight γ.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "G",
        default_value_t = 0.0
    )]
    pub tv_weight: f32,
    /// Content layers (convB_I before ReLU, reluB_I after).
    #[arg(
        long,
        value_name = "L,..",
        value_delimiter = ',',
        default_value = "relu4_2"
    )]
    pub content_layers: Vec<String>,
    /// Style layers.
    #[arg(
        long,
        value_name = "L,..",
        value_delimiter = ',',
        default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"
    )]
    pub style_layers: Vec<String>,
    /// Pooling between blocks.
    #[arg(long, value_enum, default_value_t = PoolingArg::Max)]
    pub pooling: PoolingArg,
}
