//! Convolution by **im2col + GEMM** (any kernel size and padding), and its two gradients.
//!
//! **im2col** unrolls the receptive fields into a matrix `col: K×P` with `K = C_in·k_h·k_w`
//! rows (one per weight of a filter) and `P = H'·W'` columns (one per output pixel), so that the
//! convolution is one matrix product `Y = W·col` with `W: C_out×K`. We run that product with
//! pixels as the long M dimension, `Yᵀ (P×C_out) = colᵀ (P×K) · Wᵀ (K×C_out)`, which is where a
//! packed GEMM is fastest for VGG's first, widest layers (see `BENCHMARKS.md`).
//!
//! The gradients are the transposed products: `dcol = Wᵀ·dY` scattered back by **col2im** (the
//! adjoint of im2col) gives `dx`, and `dW = dY·colᵀ` gives the weight gradient (only computed when
//! asked for — style transfer never needs it).
//!
//! The image is cut into *bands* of whole output rows, so `col` never exists for the whole image
//! (for VGG's conv1_2 at 512×384 it would be 450 MB). Bands are independent rayon tasks; their
//! size depends only on the geometry, never on the thread count, so results are bit-identical for
//! any number of threads.

use super::ConvGeometry;
use crate::kernels::elementwise;
use crate::kernels::gemm::{gemm, MatMut, MatRef};
use rayon::prelude::*;

/// Output pixels per band that the banding aims for: large enough for an efficient GEMM, small
/// enough that a band's `col` (K × pixels floats) stays a few megabytes.
const BAND_TARGET_PIXELS: usize = 2048;
/// At least this many bands (when the map has enough rows), so both cores get work on small maps.
const MIN_BANDS: usize = 8;
/// With fewer bands than [`MIN_BANDS`], the forward pass also splits the output channels into
/// this many groups.
const CHANNEL_GROUPS: usize = 4;

/// The output-row bands `[y0, y1)` the work is split into (a function of the shape alone).
pub fn bands(g: &ConvGeometry) -> Vec<(usize, usize)> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let by_pixels = BAND_TARGET_PIXELS.div_ceil(ow).max(1);
    let by_count = oh.div_ceil(MIN_BANDS).max(1);
    let rows = by_pixels.min(by_count);
    (0..oh)
        .step_by(rows)
        .map(|y0| (y0, (y0 + rows).min(oh)))
        .collect()
}

/// Writes the im2col matrix of output rows `[y0, y1)` into `col`, **K-major**:
/// `col[k·n + q]` for filter tap `k = (c·k_h + u)·k_w + v` and band pixel `q = (i−y0)·W' + j`,
/// holding `x[c, i+u−p, j+v−p]` or 0 in the padding. `col` must hold `K·n` floats, `n` the band's
/// pixel count. Each (tap, row) is one contiguous copy.
pub fn im2col_band(x: &[f32], g: &ConvGeometry, y0: usize, y1: usize, col: &mut [f32]) {
    let ow = g.out_w();
    let n = (y1 - y0) * ow;
    debug_assert_eq!(col.len(), g.k() * n);
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for u in 0..g.kh {
            for v in 0..g.kw {
                let k = (c * g.kh + u) * g.kw + v;
                let dst_rows = &mut col[k * n..(k + 1) * n];
                // Valid output columns j: 0 ≤ j+v−p < W.
                let j_lo = g.pad.saturating_sub(v).min(ow);
                let j_hi = (g.w + g.pad).saturating_sub(v).min(ow).max(j_lo);
                for (r, dst) in dst_rows.chunks_exact_mut(ow).enumerate() {
                    let iy = (y0 + r + u) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize || j_lo == j_hi {
                        dst.fill(0.0);
                        continue;
                    }
                    let src_row = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let ix_lo = j_lo + v - g.pad;
                    dst[..j_lo].fill(0.0);
                    dst[j_lo..j_hi].copy_from_slice(&src_row[ix_lo..ix_lo + (j_hi - j_lo)]);
                    dst[j_hi..].fill(0.0);
                }
            }
        }
    }
}

/// The adjoint of [`im2col_band`]: adds every entry of the K-major `dcol` of output rows
/// `[y0, y1)` back onto the input pixel it was copied from. `dx_band` covers the input rows the
/// band reads, `[y0−p, y1−1+k_h−p]` (padding rows included, so `C_in × (rows+k_h−1) × W`).
pub fn col2im_band(dcol: &[f32], g: &ConvGeometry, y0: usize, y1: usize, dx_band: &mut [f32]) {
    let ow = g.out_w();
    let n = (y1 - y0) * ow;
    let band_in_rows = y1 - y0 + g.kh - 1;
    debug_assert_eq!(dcol.len(), g.k() * n);
    debug_assert_eq!(dx_band.len(), g.c_in * band_in_rows * g.w);
    for c in 0..g.c_in {
        let plane = &mut dx_band[c * band_in_rows * g.w..(c + 1) * band_in_rows * g.w];
        for u in 0..g.kh {
            for v in 0..g.kw {
                let k = (c * g.kh + u) * g.kw + v;
                let j_lo = g.pad.saturating_sub(v).min(ow);
                let j_hi = (g.w + g.pad).saturating_sub(v).min(ow).max(j_lo);
                if j_lo == j_hi {
                    continue;
                }
                let ix_lo = j_lo + v - g.pad;
                for (r, src) in dcol[k * n..(k + 1) * n].chunks_exact(ow).enumerate() {
                    // Local input row r+u is global row y0+r+u−p.
                    let dst = &mut plane[(r + u) * g.w..(r + u + 1) * g.w];
                    for (d, s) in dst[ix_lo..ix_lo + (j_hi - j_lo)]
                        .iter_mut()
                        .zip(&src[j_lo..j_hi])
                    {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// The output-gradient rows of a band as a `C_out × n` matrix view: row `o` is channel `o`'s
/// `n` pixels from output row `y0` on (rows are a whole channel plane apart).
fn dy_band<'a>(dy: &'a [f32], g: &ConvGeometry, y0: usize, n: usize) -> MatRef<'a> {
    let p = g.out_h() * g.out_w();
    MatRef {
        data: &dy[y0 * g.out_w()..],
        rows: g.c_out,
        cols: n,
        row_stride: p,
        col_stride: 1,
    }
}

/// The forward pass's tasks `(y0, y1, o0, o1)`: bands of output rows × groups of output
/// channels. Small maps make few bands; their output channels are then split too, so every core
/// gets work (at the price of repeating the band's cheap im2col).
fn forward_task_list(g: &ConvGeometry) -> Vec<(usize, usize, usize, usize)> {
    let band_list = bands(g);
    let groups = if band_list.len() >= MIN_BANDS {
        1
    } else {
        CHANNEL_GROUPS.min(g.c_out)
    };
    let per_group = g.c_out.div_ceil(groups);
    band_list
        .iter()
        .flat_map(|&(y0, y1)| {
            (0..g.c_out)
                .step_by(per_group)
                .map(move |o0| (y0, y1, o0, (o0 + per_group).min(g.c_out)))
        })
        .collect()
}

/// How many independent tasks [`forward`] makes for `g`.
pub fn forward_tasks(g: &ConvGeometry) -> usize {
    forward_task_list(g).len()
}

/// Forward convolution of one image by im2col + GEMM: `x: C_in×H×W`, `w: C_out×K`, optional
/// `bias: C_out`; returns `y: C_out×H'×W'`, or `max(y, 0)` when `relu`.
pub fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &ConvGeometry,
) -> Vec<f32> {
    let (k, p) = (g.k(), g.out_h() * g.out_w());
    let ow = g.out_w();
    let tiles: Vec<(usize, usize, usize, Vec<f32>)> = forward_task_list(g)
        .into_par_iter()
        .map(|(y0, y1, o0, o1)| {
            let n = (y1 - y0) * ow;
            let mut col = vec![0.0; k * n];
            im2col_band(x, g, y0, y1, &mut col);
            let mut tile = vec![0.0; (o1 - o0) * n];
            // Yᵀ (n × C_out') = colᵀ (n × K) · W[o0..o1]ᵀ (K × C_out'); the tile is C_out-major.
            gemm(
                1.0,
                MatRef::row_major(&col, k, n).t(),
                MatRef::row_major(&w[o0 * k..o1 * k], o1 - o0, k).t(),
                0.0,
                MatMut {
                    data: &mut tile,
                    rows: n,
                    cols: o1 - o0,
                    row_stride: 1,
                    col_stride: n,
                },
            );
            (y0 * ow, o0, o1, tile)
        })
        .collect();
    let mut y = elementwise::zeroed(g.c_out * p);
    y.par_chunks_mut(p).enumerate().for_each(|(o, plane)| {
        let b = bias.map_or(0.0, |b| b[o]);
        for (start, o0, o1, tile) in tiles.iter().filter(|t| (t.1..t.2).contains(&o)) {
            let n = tile.len() / (o1 - o0);
            let row = &tile[(o - o0) * n..(o - o0 + 1) * n];
            for (d, s) in plane[*start..start + n].iter_mut().zip(row) {
                *d = if relu { (s + b).max(0.0) } else { s + b };
            }
        }
    });
    y
}

/// Input gradient by GEMM + col2im: `dx = col2im(Wᵀ·dY)` for `dy: C_out×H'×W'`; returns
/// `C_in×H×W` (any kernel size and padding).
pub fn backward_input(dy: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, ow) = (g.k(), g.out_w());
    let partials: Vec<(usize, Vec<f32>)> = bands(g)
        .into_par_iter()
        .map(|(y0, y1)| {
            let n = (y1 - y0) * ow;
            let mut dcol = vec![0.0; k * n];
            // dcolᵀ (n × K) = dYᵀ (n × C_out) · W (C_out × K); dcol is stored K-major.
            gemm(
                1.0,
                dy_band(dy, g, y0, n).t(),
                MatRef::row_major(w, g.c_out, k),
                0.0,
                MatMut {
                    data: &mut dcol,
                    rows: n,
                    cols: k,
                    row_stride: 1,
                    col_stride: n,
                },
            );
            let mut dx_band = vec![0.0; g.c_in * (y1 - y0 + g.kh - 1) * g.w];
            col2im_band(&dcol, g, y0, y1, &mut dx_band);
            (y0, dx_band)
        })
        .collect();
    // Sum the overlapping band contributions per channel, in band order (deterministic).
    let mut dx = elementwise::zeroed(g.c_in * g.h * g.w);
    dx.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(c, plane)| {
            for (y0, band) in &partials {
                let rows = band.len() / (g.c_in * g.w);
                let src = &band[c * rows * g.w..(c + 1) * rows * g.w];
                for (r, src_row) in src.chunks_exact(g.w).enumerate() {
                    let iy = (y0 + r) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue; // a padding row: its gradient goes nowhere
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (d, s) in dst.iter_mut().zip(src_row) {
                        *d += *s;
                    }
                }
            }
        });
    dx
}

/// Weight gradient of one image: `dW (C_out×K) = dY (C_out×P) · colᵀ (P×K)`, summed over bands
/// in band order. Returned flat, `C_out×C_in×k_h×k_w`.
pub fn backward_weight(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, ow) = (g.k(), g.out_w());
    let partials: Vec<Vec<f32>> = bands(g)
        .into_par_iter()
        .map(|(y0, y1)| {
            let n = (y1 - y0) * ow;
            let mut col = vec![0.0; k * n];
            im2col_band(x, g, y0, y1, &mut col);
            let mut dw = vec![0.0; g.c_out * k];
            // dW_band (C_out × K) = dY_band (C_out × n) · colᵀ (n × K).
            gemm(
                1.0,
                dy_band(dy, g, y0, n),
                MatRef::row_major(&col, k, n).t(),
                0.0,
                MatMut::row_major(&mut dw, g.c_out, k),
            );
            dw
        })
        .collect();
    let mut dw = vec![0.0; g.c_out * k];
    for part in &partials {
        for (d, s) in dw.iter_mut().zip(part) {
            *d += *s;
        }
    }
    dw
}
