//! Coarse-to-fine: optimise a small version of the image first, then carry what that stage
//! changed, upsampled, onto the content at the next size ([`next_stage_start`]), up to the output
//! size.
//!
//! Evaluations at half the size cost about a quarter as much, and the large structures of a
//! style settle at any size; so the cheap stages take most of the evaluation budget and the
//! full-size stage refines detail.

use nst_tensor::ndarray::ArrayD;

/// Which sizes to optimise at (`--scales`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scales {
    /// From about [`AUTO_SMALLEST`] px up, doubling to the output size.
    Auto,
    /// The output size only.
    None,
    /// These longer sides, ascending (the output size is added if missing).
    List(Vec<u32>),
}

/// `auto` halves the output size while the result stays at least this long (px).
pub const AUTO_SMALLEST: u32 = 180;

impl Scales {
    /// Parses `auto`, `none` or `PX,PX,…`.
    pub fn parse(s: &str) -> Result<Scales, String> {
        match s {
            "auto" => Ok(Scales::Auto),
            "none" => Ok(Scales::None),
            list => list
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|&px| px >= 1)
                        .ok_or_else(|| {
                            format!(
                                "--scales: expected auto, none or sizes like 256,512; got {v:?}"
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Scales::List),
        }
    }

    /// The stage sizes (longer side, ascending, ending at `size`).
    ///
    /// # Errors
    /// If a listed size is larger than `size`, or two consecutive stages differ by more than 2×.
    pub fn stages(&self, size: u32) -> Result<Vec<u32>, String> {
        let mut stages = match self {
            Scales::None => vec![size],
            Scales::Auto => {
                let mut s = vec![size];
                while s[0] / 2 >= AUTO_SMALLEST {
                    s.insert(0, s[0] / 2);
                }
                s
            }
            Scales::List(list) => {
                let mut s = list.clone();
                s.sort_unstable();
                s.dedup();
                if s.last().is_some_and(|&l| l > size) {
                    return Err(format!(
                        "--scales: {} is larger than --size {size}",
                        s.last().unwrap_or(&0)
                    ));
                }
                if s.last() != Some(&size) {
                    s.push(size);
                }
                s
            }
        };
        stages.dedup();
        if let Some(w) = stages.windows(2).find(|w| w[1] > 2 * w[0]) {
            return Err(format!(
                "--scales: from {} to {} px is more than a doubling; add a stage between",
                w[0], w[1]
            ));
        }
        Ok(stages)
    }
}

/// Splits `evals` evaluations over `stages` stages: one each, and the rest so that each stage
/// gets twice the share of the next (larger, four times as costly) one — about 2/3 and 1/3 for
/// two stages, 4/7, 2/7 and 1/7 for three. Sums to `evals` when `evals ≥ stages` (callers keep
/// at most `evals` stages).
pub fn split_budget(evals: usize, stages: usize) -> Vec<usize> {
    let weights: Vec<usize> = (0..stages).map(|i| 1 << (stages - 1 - i)).collect();
    let total: usize = weights.iter().sum();
    let rest = evals.saturating_sub(stages);
    let mut split: Vec<usize> = weights.iter().map(|w| 1 + rest * w / total).collect();
    // Rounding leftovers go to the coarsest stage, the cheapest.
    let assigned: usize = split.iter().sum();
    if assigned < evals {
        split[0] += evals - assigned;
    }
    split
}

/// The start of the next (larger) stage from the result `x` of a stage whose content image was
/// `content`: `c' + up(x − c)`, with `c'` the content at the next stage's size and `up` the
/// bicubic upsampling ([`upsample_variable`](crate::image_io::upsample_variable)).
///
/// Upsampling `x` itself would blur it: the fine detail it cannot hold at the coarse size, which
/// the lower style layers (relu2_1, relu3_1) measure most, would be missing, and the content
/// image's own detail with it. Upsampling only what the stage *changed* and adding it to the
/// sharp content keeps that detail, so the larger stage starts with a lower loss (at 512 px
/// from a 256-px stage, 30 evaluations later: 2.52e5 against 2.97e5 for the plain upsampling,
/// BENCHMARKS.md).
pub fn next_stage_start(
    x: &ArrayD<f32>,
    content: &ArrayD<f32>,
    next_content: &ArrayD<f32>,
) -> ArrayD<f32> {
    let (w, h) = (
        next_content.shape()[3] as u32,
        next_content.shape()[2] as u32,
    );
    let change = x - content;
    next_content + &crate::image_io::upsample_variable(&change, w, h)
}
