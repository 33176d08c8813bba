//! Winograd's minimal filtering F(2×2, 3×3) for 3×3 convolutions with padding 1
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2×2 output tile is computed from a 4×4 input tile `d` as
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, summed over input channels, with
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡1    0    0 ⎤        ⎡1 1  1  0⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢½    ½    ½ ⎥   Aᵀ = ⎣0 1 −1 −1⎦
//!      ⎢0 −1  1  0⎥        ⎢½   −½    ½ ⎥
//!      ⎣0  1  0 −1⎦        ⎣0    0    1 ⎦
//! ```
//!
//! The sum over channels of the 16 elementwise products is 16 independent matrix products —
//! for each of the 16 positions `e`, `M_e (tiles × C_out) = V_e (tiles × C_in) · U_eᵀ` — which
//! do `16·C_in·C_out` multiply-adds per 4 output pixels instead of im2col's `36·C_in·C_out`:
//! 2.25× fewer. The transforms are cheap passes over memory; in f32 the result agrees with
//! direct convolution to about 1e-6 relative.
//!
//! Like im2col, the image is processed in bands of tile rows fixed by the shape, one rayon task
//! each, so results do not depend on the thread count.

use super::conv::ConvGeometry;
use super::gemm::{gemm, MatMut, MatRef};
use rayon::prelude::*;

/// Tiles per band the banding aims for.
const BAND_TARGET_TILES: usize = 512;
/// At least this many bands when the map is tall enough…
const MIN_BANDS: usize = 4;
/// …but no band thinner than this many tiles: each band's 16 GEMMs repack the filters, which
/// must be amortised over enough tiles.
const MIN_BAND_TILES: usize = 128;

/// Input channels from which Winograd beats im2col here. Its transforms cost a fixed amount per
/// channel and tile, while the GEMM work it saves grows with the output channels, and its 16
/// small GEMMs (inner dimension `C_in`) run well only for wide inputs: measured on VGG16 at
/// 512×384 (`BENCHMARKS.md`), it is 30% faster at 512 input channels and slower below.
pub const MIN_CHANNELS: usize = 512;

/// Whether F(2×2, 3×3) applies — a 3×3 kernel with padding 1 (output size = input size) — and
/// pays — at least [`MIN_CHANNELS`] input channels.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.pad == 1 && g.c_in >= MIN_CHANNELS
}

/// The filters in the Winograd domain: `U_e[o][c]` for the 16 positions `e`, from
/// `w: C_out×C_in×3×3`; stored `[16][C_out][C_in]`.
pub fn transform_filters(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0.0; 16 * c_out * c_in];
    for o in 0..c_out {
        for c in 0..c_in {
            let g = &w[(o * c_in + c) * 9..(o * c_in + c + 1) * 9];
            // G·g: 4×3.
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = g0;
                gg[1][j] = 0.5 * (g0 + g1 + g2);
                gg[2][j] = 0.5 * (g0 - g1 + g2);
                gg[3][j] = g2;
            }
            // (G·g)·Gᵀ: 4×4.
            for (i, row) in gg.iter().enumerate() {
                let t = [
                    row[0],
                    0.5 * (row[0] + row[1] + row[2]),
                    0.5 * (row[0] - row[1] + row[2]),
                    row[2],
                ];
                for (j, v) in t.into_iter().enumerate() {
                    u[((i * 4 + j) * c_out + o) * c_in + c] = v;
                }
            }
        }
    }
    u
}

/// `w'[c][o][u][v] = w[o][c][2−u][2−v]`: the filters of the convolution that computes the input
/// gradient of a 3×3, padding-1 convolution (`dx = conv(dy, w', pad 1)`).
pub fn flip_transpose(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut wt = vec![0.0; w.len()];
    for o in 0..c_out {
        for c in 0..c_in {
            for k in 0..9 {
                wt[(c * c_out + o) * 9 + k] = w[(o * c_in + c) * 9 + (8 - k)];
            }
        }
    }
    wt
}

/// The tile-row bands `[t0, t1)` for `tile_rows × tile_cols` tiles.
fn bands(tile_rows: usize, tile_cols: usize) -> Vec<(usize, usize)> {
    let by_tiles = BAND_TARGET_TILES.div_ceil(tile_cols).max(1);
    let at_least = MIN_BAND_TILES.div_ceil(tile_cols).max(1);
    let rows = by_tiles
        .min(tile_rows.div_ceil(MIN_BANDS))
        .max(at_least)
        .max(1);
    (0..tile_rows)
        .step_by(rows)
        .map(|t0| (t0, (t0 + rows).min(tile_rows)))
        .collect()
}

/// `V_e[c][q] = (Bᵀ d B)_e` for every channel `c` and tile `q` of tile rows `[t0, t1)`, where `d`
/// is the 4×4 input patch at rows `2·ty − 1 …`, columns `2·tx − 1 …` (zero outside). Stored
/// `[16][C_in][n]`, `n` the band's tile count.
fn transform_input(
    x: &[f32],
    g: &ConvGeometry,
    t0: usize,
    t1: usize,
    tile_cols: usize,
    v: &mut [f32],
) {
    let n = (t1 - t0) * tile_cols;
    let (h, w) = (g.h as isize, g.w as isize);
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ty in t0..t1 {
            for tx in 0..tile_cols {
                let mut d = [[0.0f32; 4]; 4];
                let (y0, x0) = (2 * ty as isize - 1, 2 * tx as isize - 1);
                for (r, row) in d.iter_mut().enumerate() {
                    let iy = y0 + r as isize;
                    if iy < 0 || iy >= h {
                        continue;
                    }
                    for (s, val) in row.iter_mut().enumerate() {
                        let ix = x0 + s as isize;
                        if ix >= 0 && ix < w {
                            *val = plane[iy as usize * g.w + ix as usize];
                        }
                    }
                }
                // Bᵀ·d (rows), then ·B (columns).
                let mut bd = [[0.0f32; 4]; 4];
                for j in 0..4 {
                    bd[0][j] = d[0][j] - d[2][j];
                    bd[1][j] = d[1][j] + d[2][j];
                    bd[2][j] = d[2][j] - d[1][j];
                    bd[3][j] = d[1][j] - d[3][j];
                }
                let q = (ty - t0) * tile_cols + tx;
                for (i, r) in bd.iter().enumerate() {
                    let t = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
                    for (j, val) in t.into_iter().enumerate() {
                        v[((i * 4 + j) * g.c_in + c) * n + q] = val;
                    }
                }
            }
        }
    }
}

/// 3×3, padding-1 convolution of one image by F(2×2, 3×3): `x: C_in×H×W`, `u` from
/// [`transform_filters`], optional `bias: C_out`; returns `C_out×H×W`.
pub fn conv3x3_forward(x: &[f32], u: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    assert!(
        g.kh == 3 && g.kw == 3 && g.pad == 1,
        "winograd: needs a 3×3 kernel with padding 1"
    );
    let (tile_rows, tile_cols) = (g.h.div_ceil(2), g.w.div_ceil(2));
    let tiles: Vec<(usize, Vec<f32>)> = bands(tile_rows, tile_cols)
        .into_par_iter()
        .map(|(t0, t1)| {
            let n = (t1 - t0) * tile_cols;
            let mut v = vec![0.0; 16 * g.c_in * n];
            transform_input(x, g, t0, t1, tile_cols, &mut v);
            let mut m = vec![0.0; 16 * g.c_out * n];
            // The 16 products are independent: parallel too, which keeps both cores busy on
            // small maps that make only a band or two.
            m.par_chunks_mut(g.c_out * n)
                .enumerate()
                .for_each(|(e, me)| {
                    let ve = &v[e * g.c_in * n..(e + 1) * g.c_in * n];
                    let ue = &u[e * g.c_out * g.c_in..(e + 1) * g.c_out * g.c_in];
                    // M_eᵀ (n × C_out) = V_eᵀ (n × C_in) · U_eᵀ (C_in × C_out); M_e stored C_out-major.
                    gemm(
                        1.0,
                        MatRef::row_major(ve, g.c_in, n).t(),
                        MatRef::row_major(ue, g.c_out, g.c_in).t(),
                        0.0,
                        MatMut {
                            data: me,
                            rows: n,
                            cols: g.c_out,
                            row_stride: 1,
                            col_stride: n,
                        },
                    );
                });
            (t0, m)
        })
        .collect();
    // Output transform Y = Aᵀ m A per tile, written straight into each output channel plane.
    let mut y = vec![0.0; g.c_out * g.h * g.w];
    y.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(o, plane)| {
            let b = bias.map_or(0.0, |b| b[o]);
            for (t0, m) in &tiles {
                let n = m.len() / (16 * g.c_out);
                let rows = n / tile_cols;
                for r in 0..rows {
                    let ty = t0 + r;
                    for tx in 0..tile_cols {
                        let q = r * tile_cols + tx;
                        let at = |e: usize| m[(e * g.c_out + o) * n + q];
                        // Aᵀ·m: 2×4.
                        let am: [[f32; 4]; 2] = [
                            std::array::from_fn(|j| at(j) + at(4 + j) + at(8 + j)),
                            std::array::from_fn(|j| at(4 + j) - at(8 + j) - at(12 + j)),
                        ];
                        for (i, row) in am.iter().enumerate() {
                            let oy = 2 * ty + i;
                            if oy >= g.h {
                                continue;
                            }
                            let out = [row[0] + row[1] + row[2], row[1] - row[2] - row[3]];
                            for (j, val) in out.into_iter().enumerate() {
                                let ox = 2 * tx + j;
                                if ox < g.w {
                                    plane[oy * g.w + ox] = val + b;
                                }
                            }
                        }
                    }
                }
            }
        });
    y
}
