//! The multiscale preconditioner of L-BFGS: the recursion starts from `H₀ = γ·M` instead of
//! `γ·I`, with
//!
//! ```text
//! M = Σₗ wₗ² · Uₗ·Uₗᵀ,   l = 0 … LEVELS − 1,   wₗ = 2⁻ˡ,   U₀ = I
//! ```
//!
//! where `Uₗ` upsamples an image `2ˡ` times smaller to full size (bilinear, each plane on its
//! own) and `Uₗᵀ` is its adjoint. This is exactly what L-BFGS does when the image is written as
//! a pyramid, `x = x₀ + Σₗ wₗ·Uₗ·zₗ`, and the `zₗ` at 1, ½, ¼ of the size are optimised instead
//! of `x`: the two-loop recursion in `z` maps onto the one in `x` with `H₀ = γ·M` (Nocedal &
//! Wright, *Numerical Optimization*, §7.2: any symmetric positive definite `H₀` may start it).
//! The objective and its minimisers do not change; the path does. `Uₗ·Uₗᵀ` multiplies a smooth
//! change of the image by about `4ˡ`, which `wₗ² = 4⁻ˡ` cancels, so `M` weighs a broad change
//! about `LEVELS` times more than a pixel-sized one (exactly `LEVELS` on a constant image): the
//! steps move the broad colours and shapes the style's Gram matrices call for sooner, where the
//! plain metric sees only the gradient's pixels. The history still holds image-sized vectors;
//! applying `M` costs a few passes over one.
//!
//! Measured (BENCHMARKS.md): at 512 px, 200 evaluations end 0.6–3% lower than with `γ·I` for
//! three styles; with the first step sized in image units as well (`lbfgs.rs`), 0.9–3.3% lower,
//! reaching the classic method's 200-evaluation loss 12–43 evaluations sooner.

use super::dot;
use rayon::prelude::*;

/// Levels of the pyramid, the full size included: 2, 3, 4 and 5 were measured, 3 did best.
pub const LEVELS: usize = 3;

/// Linear interpolation from `n` samples to `len` (align-corners-off, as `torch`'s `bilinear`):
/// output `o` is `(1 − λ)·in[i0] + λ·in[i1]` at the source position `(o + ½)·n/len − ½`,
/// clamped to the first sample.
#[derive(Clone, Debug)]
struct Interp {
    /// Per output sample: `(i0, i1, λ)`.
    taps: Vec<(usize, usize, f32)>,
    /// Input samples.
    n: usize,
}

impl Interp {
    fn new(n: usize, len: usize) -> Interp {
        let scale = n as f64 / len as f64;
        let taps = (0..len)
            .map(|o| {
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n - 1);
                let i1 = (i0 + 1).min(n - 1);
                (i0, i1, (src - i0 as f64) as f32)
            })
            .collect();
        Interp { taps, n }
    }

    /// `out += interpolation of row` (`row` of `n`, `out` of `len` samples).
    fn up(&self, row: &[f32], out: &mut [f32], k: f32) {
        for (o, &(i0, i1, l)) in out.iter_mut().zip(&self.taps) {
            *o += k * ((1.0 - l) * row[i0] + l * row[i1]);
        }
    }

    /// `out += adjoint of the interpolation, applied to row` (`row` of `len`, `out` of `n`).
    fn down(&self, row: &[f32], out: &mut [f32]) {
        for (&v, &(i0, i1, l)) in row.iter().zip(&self.taps) {
            out[i0] += (1.0 - l) * v;
            out[i1] += l * v;
        }
    }
}

/// One coarser level: its weight `wₗ` and the interpolations of rows and columns.
#[derive(Clone, Debug)]
struct Level {
    weight: f32,
    rows: Interp,
    cols: Interp,
}

impl Level {
    /// `Uₗᵀ·plane`: each row's columns folded (the adjoint of the column interpolation), then
    /// the rows folded.
    fn down(&self, plane: &[f32], width: usize) -> Vec<f32> {
        let ws = self.cols.n;
        let mut small = vec![0.0f32; self.rows.n * ws];
        let mut narrow = vec![0.0f32; ws];
        for (row, &(i0, i1, l)) in plane.chunks_exact(width).zip(&self.rows.taps) {
            narrow.fill(0.0);
            self.cols.down(row, &mut narrow);
            for (&v, s) in narrow.iter().zip(&mut small[i0 * ws..(i0 + 1) * ws]) {
                *s += (1.0 - l) * v;
            }
            for (&v, s) in narrow.iter().zip(&mut small[i1 * ws..(i1 + 1) * ws]) {
                *s += l * v;
            }
        }
        small
    }

    /// `row += wₗ²·(Uₗ·small)[y]`: output row `y` interpolated between two coarse rows (into
    /// `coarse`, a scratch row of at least `cols.n` values), then along its columns.
    fn add_up_row(&self, small: &[f32], y: usize, row: &mut [f32], coarse: &mut [f32]) {
        let ws = self.cols.n;
        let (i0, i1, l) = self.rows.taps[y];
        let (a, b) = (
            &small[i0 * ws..(i0 + 1) * ws],
            &small[i1 * ws..(i1 + 1) * ws],
        );
        let coarse = &mut coarse[..ws];
        for ((c, &a), &b) in coarse.iter_mut().zip(a).zip(b) {
            *c = (1.0 - l) * a + l * b;
        }
        self.cols.up(coarse, row, self.weight * self.weight);
    }
}

/// The metric `M` (see the module documentation) for images of `planes × height × width`
/// values, planes outermost.
#[derive(Clone, Debug)]
pub struct Multiscale {
    planes: usize,
    height: usize,
    width: usize,
    levels: Vec<Level>,
}

impl Multiscale {
    /// `M` with `LEVELS` = 3 levels (full, ½ and ¼ size) for `planes` planes of `height × width`.
    pub fn new(planes: usize, height: usize, width: usize) -> Multiscale {
        let levels = (1..LEVELS)
            .map(|l| {
                let f = 1 << l;
                Level {
                    weight: 0.5f32.powi(l as i32),
                    rows: Interp::new(height.div_ceil(f), height),
                    cols: Interp::new(width.div_ceil(f), width),
                }
            })
            .collect();
        Multiscale {
            planes,
            height,
            width,
            levels,
        }
    }

    /// Values in one image.
    fn len(&self) -> usize {
        self.planes * self.height * self.width
    }

    /// `Uₗᵀ·v` of every plane at every coarser level, one task each: entry `p·(LEVELS − 1) +
    /// l − 1` is plane `p` at level `l`.
    fn coarse(&self, v: &[f32]) -> Vec<Vec<f32>> {
        let (area, levels) = (self.height * self.width, self.levels.len());
        (0..self.planes * levels)
            .into_par_iter()
            .map(|t| self.levels[t % levels].down(&v[t / levels * area..][..area], self.width))
            .collect()
    }

    /// `M·v`: the coarse images `Uₗᵀ·v` (one task per plane and level), then the output rows in
    /// parallel, each adding its levels in order.
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        assert_eq!(v.len(), self.len(), "multiscale: wrong length");
        let mut out = v.to_vec();
        if self.height * self.width == 0 || self.levels.is_empty() {
            return out;
        }
        let coarse = self.coarse(v);
        let (h, levels) = (self.height, self.levels.len());
        out.par_chunks_mut(self.width).enumerate().for_each_init(
            || vec![0.0f32; self.width],
            |scratch, (r, row)| {
                let (p, y) = (r / h, r % h);
                for (l, level) in self.levels.iter().enumerate() {
                    level.add_up_row(&coarse[p * levels + l], y, row, scratch);
                }
            },
        );
        out
    }

    /// `vᵀ·M·v = ‖v‖² + Σₗ wₗ²·‖Uₗᵀ·v‖²`, in f64, without forming `M·v`: the squared norms by
    /// the optimizer's `dot`, summed in a fixed order (plane by plane), so the result does not
    /// depend on the thread count.
    pub fn quadratic(&self, v: &[f32]) -> f64 {
        assert_eq!(v.len(), self.len(), "multiscale: wrong length");
        let area = self.height * self.width;
        if area == 0 {
            return 0.0;
        }
        let coarse = self.coarse(v);
        let levels = self.levels.len();
        // Plane by plane: its own norm plus its levels'.
        v.chunks(area)
            .enumerate()
            .map(|(p, plane)| {
                let coarse_terms: f64 = self
                    .levels
                    .iter()
                    .zip(&coarse[p * levels..])
                    .map(|(level, c)| {
                        let w = level.weight as f64;
                        w * w * dot(c, c)
                    })
                    .sum();
                dot(plane, plane) + coarse_terms
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [−1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    /// Awkward shapes: odd sides, a single row or column, 1×1, sides smaller than 2ˡ.
    const SHAPES: [(usize, usize, usize); 6] = [
        (3, 7, 5),
        (1, 1, 1),
        (2, 1, 9),
        (3, 13, 2),
        (1, 16, 12),
        (3, 3, 3),
    ];

    #[test]
    fn m_is_symmetric_and_its_quadratic_form_matches() {
        for (i, &(p, h, w)) in SHAPES.iter().enumerate() {
            let m = Multiscale::new(p, h, w);
            let (u, v) = (
                values(p * h * w, 2 * i as u64),
                values(p * h * w, 2 * i as u64 + 1),
            );
            let (uv, vu) = (dot(&m.apply(&u), &v), dot(&u, &m.apply(&v)));
            assert!(
                (uv - vu).abs() <= 1e-5 * uv.abs().max(1.0),
                "{p}×{h}×{w}: {uv} vs {vu}"
            );
            let (q, form) = (m.quadratic(&u), dot(&u, &m.apply(&u)));
            assert!(
                (q - form).abs() <= 1e-5 * form,
                "{p}×{h}×{w}: {q} vs {form}"
            );
            // Positive definite, and at least the identity's form.
            assert!(q >= dot(&u, &u) * (1.0 - 1e-6), "{p}×{h}×{w}");
        }
    }

    #[test]
    fn m_weighs_a_constant_image_levels_times() {
        // Sides divisible by 2^(LEVELS−1): every coarse sample gathers weight 2ˡ per side.
        let m = Multiscale::new(3, 8, 12);
        let out = m.apply(&vec![1.0; 3 * 8 * 12]);
        for v in out {
            assert!((v - LEVELS as f32).abs() < 1e-5, "{v}");
        }
    }

    #[test]
    fn m_leaves_a_checkerboard_nearly_alone() {
        // The finest pattern averages away on the coarse levels, away from the edges (where
        // the clamped taps of the ¼-size level reach 6 pixels in).
        let (h, w) = (24, 20);
        let m = Multiscale::new(1, h, w);
        let v: Vec<f32> = (0..h * w)
            .map(|i| if (i / w + i % w) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let out = m.apply(&v);
        for y in 6..h - 6 {
            for x in 6..w - 6 {
                let i = y * w + x;
                assert!((out[i] - v[i]).abs() < 1e-6, "({y}, {x}): {}", out[i]);
            }
        }
    }
}
