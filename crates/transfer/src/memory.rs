//! The memory budget: how much a run will need, estimated before anything large is allocated,
//! and what to do when that is more than the machine (or `--max-memory`) allows.
//!
//! The peak resident memory of a run is modelled as
//!
//! ```text
//! peak = base + weights + prepared filters                       (fixed)
//!      + FRAGMENTATION · 4 B · (2·M_max + Σ_content M_l)          (one evaluation)
//!      + 2 · threads · W_max                                      (Winograd workspaces)
//!      + 4 B · N · IMAGE_COPIES + 2 B · N · 2·pairs                (images and optimizer state)
//! ```
//!
//! (with tiled evaluation, the maps of one tile's window, plus the whole content targets) where
//! `M_l` is the number of floats in layer `l`'s feature map, `M_max` the largest map up to
//! the deepest layer used (block 1's: 64 channels at full size), `N = 3·H·W` the image,
//! `pairs` the L-BFGS history actually kept (two vectors a pair, stored in half precision),
//! and `W_max` the largest workspace of one Winograd band
//! (`nst_tensor::kernels::conv::winograd::band_workspace`: 27 MiB for VGG's conv4 and conv5
//! layers once their maps have 192 tiles), which each thread of the pool keeps for its next band
//! — two of them when, waiting inside one band for a part another thread took, it starts another
//! band (measured at 1024×768 with 2 threads: bands of 192 tiles at conv4 and conv5, 9 → 27 MiB
//! each, raised the peak by 103 MiB; BENCHMARKS.md). One evaluation's peak is in the backward
//! pass, at the style layer `relu1_1`: its map, which the Gram matrix's derivative reads, and the
//! gradient that derivative writes — two maps of the largest size (conv1_2's input gradient is
//! later added into that gradient in place, and conv1_2's own output, pooled as it is stored,
//! never exists at full size) — while the content targets stay resident. The prepared filters
//! are the Winograd-domain form of each 3×3 layer (4× the raw weights; the input gradient
//! reads the same set transposed, see
//! `nst_tensor::kernels::conv::winograd::input_gradient`). The factor
//! [`FRAGMENTATION`] accounts for the allocator keeping freed blocks for reuse (the speed
//! setting in the CLI's `main.rs`); it is calibrated against measured peaks (BENCHMARKS.md).

use crate::run::OptimizerKind;
use nst_tensor::kernels::conv::{self, winograd, Algorithm, ConvGeometry};
use nst_vgg::arch::Layer;
use nst_vgg::{Vgg, VggError};
use std::path::Path;

/// Resident memory a run needs beyond its data: code, thread stacks, allocator state (bytes).
pub const BASE_BYTES: u64 = 24 << 20;
/// How much more resident memory the evaluation's maps take than their live size, because the
/// allocator keeps freed blocks for reuse rather than returning them (fitted to the peaks
/// measured at 1024×768 and 2048×1536, which need 2.0 and 2.1; BENCHMARKS.md).
pub const FRAGMENTATION: f64 = 2.1;
/// Image-sized vectors alive besides the L-BFGS pairs: the iterate, the previous iterate, the
/// direction, the current and trial gradients, the evaluated image and its copy on the tape,
/// the best image, the content image and the output.
pub const IMAGE_COPIES: u64 = 10;
/// The smallest longer side worth suggesting (VGG needs 32 px to reach relu5_1).
pub const MIN_SIDE: usize = 32;
/// The shortest L-BFGS history worth running; a budget that cannot hold it is refused.
pub const MIN_HISTORY: usize = 5;

/// What a run will look like in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Estimated peak resident memory, in bytes.
    pub peak_bytes: u64,
    /// The L-BFGS history that fits (equal to the one asked for unless capped).
    pub history: Option<usize>,
    /// The history asked for, when it was capped to fit.
    pub capped_from: Option<usize>,
    /// The tile side of tiled evaluation, or `None` for whole images.
    pub tile: Option<usize>,
}

/// Why a run cannot go ahead within the budget.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The estimate exceeds the budget even with the shortest history.
    #[error(
        "a {width}×{height} run needs at least {need} but the memory budget is {budget}; \
         the largest output that fits is --size {largest} (or raise --max-memory)"
    )]
    TooLarge {
        /// Output width.
        width: usize,
        /// Output height.
        height: usize,
        /// The budget the leanest plan (smallest tile, shortest history) needs, formatted.
        need: String,
        /// The budget, formatted.
        budget: String,
        /// The longest side that fits (0 if none).
        largest: usize,
    },
    /// Not even a tiny output fits: the fixed part (weights, prepared filters) or the style
    /// images (`--style-scale`) take the budget.
    #[error(
        "the run needs at least {need} but the memory budget is {budget}, and no output size \
         fits it: raise --max-memory, or lower --style-scale or --history"
    )]
    NothingFits {
        /// The budget the leanest plan needs, formatted.
        need: String,
        /// The budget, formatted.
        budget: String,
    },
    /// The layers could not be resolved.
    #[error(transparent)]
    Network(#[from] VggError),
}

/// What the estimate needs to know of a run besides the network and the optimizer.
#[derive(Clone, Debug)]
pub struct RunShape<'a> {
    /// The content layers.
    pub content_layers: &'a [String],
    /// The style layers.
    pub style_layers: &'a [String],
    /// The output's width and height.
    pub size: (usize, usize),
    /// The pixels of all style images together, at the size they are used.
    pub style_pixels: usize,
    /// The tile side of tiled evaluation, or `None` for whole images.
    pub tile: Option<usize>,
}

/// The estimated peak of a run of `shape` (see the module documentation) with an optimizer
/// keeping `pairs` L-BFGS pairs, evaluated on the current rayon pool's threads.
pub fn estimate_peak(vgg: &Vgg, shape: &RunShape, pairs: usize) -> Result<u64, VggError> {
    let (width, height) = shape.size;
    let weights: u64 = vgg
        .conv_weights()
        .iter()
        .map(|c| 4 * (c.weight.len() + c.bias.len()) as u64)
        .sum();
    let whole = maps(vgg, shape, (width, height))?;
    let (evaluation, workspace) = match shape.tile {
        None => (
            FRAGMENTATION * 4.0 * (2 * whole.largest + whole.content) as f64,
            whole.workspace,
        ),
        Some(side) => {
            // Each tile's window is evaluated like a small image; the content targets stay
            // whole.
            let geo = vgg.tile_geometry(&[shape.content_layers, shape.style_layers].concat())?;
            let side = side.max(1).div_ceil(geo.align) * geo.align;
            let window = (
                (side + 2 * geo.halo).min(width),
                (side + 2 * geo.halo).min(height),
            );
            let tile = maps(vgg, shape, window)?;
            (
                FRAGMENTATION * 4.0 * (2 * tile.largest + tile.content) as f64
                    + 4.0 * whole.content as f64,
                tile.workspace,
            )
        }
    };
    let workspaces = workspace.saturating_mul(2 * rayon::current_num_threads() as u64);
    let image = 4 * 3 * (width * height) as u64;
    // Saturating: sizes from flags (`--history`, `--style-scale`) may be absurd, and the
    // estimate must then say "too much", not wrap around.
    // A pair is two vectors of 2-byte values: one f32 image's bytes.
    let images = image
        .saturating_mul((pairs as u64).saturating_add(IMAGE_COPIES))
        .saturating_add(12u64.saturating_mul(shape.style_pixels as u64));
    Ok((BASE_BYTES + weights + whole.filters)
        .saturating_add(evaluation as u64)
        .saturating_add(workspaces)
        .saturating_add(images))
}

/// Floats in the feature maps of one pass over a `width×height` input, and bytes of prepared
/// filters, up to the deepest layer of `shape`.
struct Maps {
    /// The largest map.
    largest: u64,
    /// The content layers' maps together.
    content: u64,
    /// The prepared filters: Winograd-domain forms, and flipped ones where an input gradient
    /// runs by im2col.
    filters: u64,
    /// The largest workspace of one Winograd band, in bytes.
    workspace: u64,
}

fn maps(vgg: &Vgg, shape: &RunShape, (width, height): (usize, usize)) -> Result<Maps, VggError> {
    let all: Vec<String> = [shape.content_layers, shape.style_layers].concat();
    let wanted = vgg.resolve(&all)?;
    let content = vgg.resolve(shape.content_layers)?;
    let layers = vgg.arch().layers();
    let deepest = wanted
        .iter()
        .filter_map(|l| layers.iter().position(|a| a == l))
        .max()
        .unwrap_or(0);
    let (mut h, mut w, mut channels) = (height, width, 3usize);
    let mut m = Maps {
        largest: 0,
        content: 0,
        filters: 0,
        workspace: 0,
    };
    for layer in &layers[..=deepest] {
        match *layer {
            Layer::Conv { conv, .. } => {
                let shape = vgg.conv_weights()[conv].weight.shape().to_vec();
                let g = ConvGeometry {
                    c_in: shape[1],
                    h,
                    w,
                    c_out: shape[0],
                    kh: shape[2],
                    kw: shape[3],
                    pad: 1,
                    transposed: false,
                };
                let raw = 4 * (g.c_out * g.k()) as u64;
                let (forward, input_grad) =
                    (conv::forward_algorithm(&g), conv::input_grad_algorithm(&g));
                // One Winograd-domain set serves both passes; an input gradient by im2col or
                // direct summation keeps the flipped filters.
                if forward == Algorithm::Winograd4x4 || input_grad == Algorithm::Winograd4x4 {
                    m.filters += 4 * raw;
                    // The input gradient's bands are the forward pass's, its channels swapped.
                    m.workspace = m.workspace.max(winograd::band_workspace(&g));
                }
                if matches!(input_grad, Algorithm::Im2col | Algorithm::Direct) {
                    m.filters += raw;
                }
                channels = g.c_out;
            }
            Layer::Relu { .. } => {}
            Layer::Pool { .. } => (h, w) = (h / 2, w / 2),
        }
        let map = (channels * h * w) as u64;
        m.largest = m.largest.max(map);
        if content.contains(layer) {
            m.content += map;
        }
    }
    Ok(m)
}

/// The L-BFGS pairs a run of `evals` evaluations can keep: at most one per iteration.
pub fn pairs_kept(optimizer: OptimizerKind, evals: usize) -> usize {
    match optimizer {
        OptimizerKind::Lbfgs { history, .. } => history.min(evals),
        // Adam's two moments are two image-sized vectors.
        OptimizerKind::Adam { .. } => 1,
        OptimizerKind::Gd { .. } => 0,
    }
}

/// The share of the budget a plan may fill. The estimate is within about ±10% of the measured
/// peaks (BENCHMARKS.md), and a run must stay under its budget — a pod or job over its limit is
/// killed — so the plan keeps the rest for the estimate's error: at 2048×1536 under
/// `--max-memory 6G`, filling the whole budget gave a peak of 6.30 GiB (BENCHMARKS.md).
pub const BUDGET_SHARE: f64 = 0.9;

/// Tile sides tried, largest first, when a whole-image evaluation does not fit and no `--tile`
/// was given: larger tiles waste less on their halo.
pub const AUTO_TILES: [usize; 3] = [1024, 512, 256];

/// Plans a run of `shape` with `optimizer` for `evals` evaluations within `budget` bytes (its
/// estimate at most [`BUDGET_SHARE`] of them). The evaluation is whole-image if that fits with
/// at least [`MIN_HISTORY`] L-BFGS pairs, else tiled with the largest of [`AUTO_TILES`] that
/// does (unless `shape.tile` fixes the tile); then the L-BFGS history asked for, or the longest
/// that fits. If nothing fits, the error names the largest output size that would (same aspect
/// ratio, smallest tile, shortest history).
pub fn plan(
    vgg: &Vgg,
    shape: &RunShape,
    optimizer: OptimizerKind,
    evals: usize,
    budget: u64,
) -> Result<Plan, MemoryError> {
    let estimate = |size: (usize, usize), tile, pairs| {
        // The style images follow the output size (`--style-scale` is relative to it).
        let area = (size.0 * size.1) as f64 / (shape.size.0 * shape.size.1).max(1) as f64;
        let s = RunShape {
            size,
            tile,
            style_pixels: (shape.style_pixels as f64 * area) as usize,
            ..shape.clone()
        };
        estimate_peak(vgg, &s, pairs)
    };
    let size = shape.size;
    let room = (budget as f64 * BUDGET_SHARE) as u64;
    let pairs = pairs_kept(optimizer, evals);
    let min_pairs = pairs.min(MIN_HISTORY);
    let history = match optimizer {
        OptimizerKind::Lbfgs { history, .. } => Some(history),
        _ => None,
    };
    let candidates: Vec<Option<usize>> = match shape.tile {
        Some(side) => vec![Some(side)],
        None => std::iter::once(None)
            .chain(AUTO_TILES.iter().map(|&t| Some(t)))
            .collect(),
    };
    for &tile in &candidates {
        let floor = estimate(size, tile, min_pairs)?;
        if floor > room {
            continue;
        }
        let peak = estimate(size, tile, pairs)?;
        if peak <= room {
            return Ok(Plan {
                peak_bytes: peak,
                history,
                capped_from: None,
                tile,
            });
        }
        // Every pair costs the same two image-sized vectors: solve for the count that fits.
        let per_pair = estimate(size, tile, min_pairs + 1)? - floor;
        let fits = min_pairs + ((room - floor) / per_pair.max(1)) as usize;
        return Ok(Plan {
            peak_bytes: estimate(size, tile, fits)?,
            history: Some(fits),
            capped_from: history,
            tile,
        });
    }
    // The largest longer side (same aspect ratio) whose leanest run fits.
    let leanest = *candidates.last().expect("at least one candidate");
    let (w, h) = size;
    let scaled = |side: usize| {
        let longer = w.max(h) as f64;
        let f = |v: usize| ((v as f64 * side as f64 / longer).round() as usize).max(1);
        (f(w), f(h))
    };
    let (mut lo, mut hi) = (0usize, w.max(h));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if estimate(scaled(mid), leanest, min_pairs)? <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    // The budget the leanest plan needs: its estimate fills at most BUDGET_SHARE of it.
    let need = format_bytes((estimate(size, leanest, min_pairs)? as f64 / BUDGET_SHARE) as u64);
    if lo < MIN_SIDE {
        return Err(MemoryError::NothingFits {
            need,
            budget: format_bytes(budget),
        });
    }
    Err(MemoryError::TooLarge {
        width: w,
        height: h,
        need,
        budget: format_bytes(budget),
        largest: lo,
    })
}

/// `SIZE` as bytes: a number with an optional binary unit, `K`, `M`, `G` or `T` (e.g. `6G`,
/// `512M`, `1.5G`, `1073741824`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].trim_end_matches(['B', 'b', 'i'])),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "{s:?}: expected a size like 6G, 512M or 1073741824"
            ))
        }
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like 6G, 512M or 1073741824"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!("{s:?}: not a usable memory size"));
    }
    Ok(bytes as u64)
}

/// Bytes for people: `1.5 GiB`, `734 MiB`, `12 KiB`, `100 B` — never a budget of "0 MiB".
pub fn format_bytes(b: u64) -> String {
    let gib = b as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else if b >= 1 << 20 {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.0} KiB", b as f64 / (1u64 << 10) as f64)
    } else {
        format!("{b} B")
    }
}

/// Where a run's memory budget came from, said in the plan line (a job killed for memory is
/// easier to understand when the plan names the limit it ran under).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--max-memory`.
    MaxMemory,
    /// 80 % of `MemAvailable`.
    Available,
    /// The cgroup's memory limit (a Kubernetes pod's or a Slurm job's).
    Cgroup,
}

impl BudgetSource {
    /// A few words for the plan line.
    pub fn describe(self) -> &'static str {
        match self {
            BudgetSource::MaxMemory => "--max-memory",
            BudgetSource::Available => "80% of available memory",
            BudgetSource::Cgroup => "the cgroup's memory limit",
        }
    }
}

/// A run's memory budget and where it came from: `max_memory` (`--max-memory`) if given, else
/// [`default_budget`]. `None` where neither is known.
pub fn budget(max_memory: Option<u64>) -> Option<(u64, BudgetSource)> {
    max_memory
        .map(|b| (b, BudgetSource::MaxMemory))
        .or_else(default_budget)
}

/// The default budget: the smaller of 80 % of the memory the kernel says is available
/// (`MemAvailable`) and the memory limit of the cgroup the process runs in (Kubernetes and Slurm
/// confine jobs to one; see [`cgroup_limit`]), and which of the two it is. `None` where neither
/// can be read.
pub fn default_budget() -> Option<(u64, BudgetSource)> {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024 / 10 * 8)
    });
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| cgroup_limit(&own, Path::new("/sys/fs/cgroup")));
    let available = available.map(|a| (a, BudgetSource::Available));
    let cgroup = cgroup.map(|c| (c, BudgetSource::Cgroup));
    match (available, cgroup) {
        (Some(a), Some(c)) => Some(if c.0 < a.0 { c } else { a }),
        (a, c) => a.or(c),
    }
}

/// The memory limit that applies to the process whose `/proc/self/cgroup` text is `own`, with
/// the cgroup file systems mounted under `root` (`/sys/fs/cgroup`): the smallest limit on the
/// way from its own cgroup up to the root, since every ancestor's limit applies too. `None` if
/// no level sets one.
///
/// Its own cgroup is not always the root one: a Slurm job's is a few levels down
/// (`/system.slice/slurmstepd.scope/job_N/step_0/…`), seen from the host's hierarchy, while a
/// container with its own cgroup namespace sees its cgroup as `/`. Both cgroup versions:
/// v2's line `0::PATH` with `memory.max` (`max` when unlimited) under `root`; v1's line whose
/// controllers include `memory`, with `memory.limit_in_bytes` (a huge number when unlimited)
/// under `root/memory`. Levels that do not exist below the mount — a container may see its
/// host-side path but only its own subtree — are skipped.
pub fn cgroup_limit(own: &str, root: &Path) -> Option<u64> {
    let mut best: Option<u64> = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (mount, file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut dir = mount.join(path.trim_start_matches('/'));
        loop {
            let limit = std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                // cgroup v1 reports "no limit" as a huge number (v2 as "max", which does not parse).
                .filter(|&v| v < 1 << 60);
            if let Some(v) = limit {
                best = Some(best.map_or(v, |b| b.min(v)));
            }
            if dir == mount || !dir.pop() {
                break;
            }
        }
    }
    best
}
