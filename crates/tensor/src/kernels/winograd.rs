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
/// GEMMs (inner dimension `C_in`) run well only for wide enough inputs: measured on VGG16 at
/// 512×384 (`BENCHMARKS.md`), it is 1.46× faster than im2col at 128 channels (conv2_2) and
/// 1.25× slower at 64 (conv1_2).
pub const MIN_CHANNELS: usize = 128;

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
///
/// Each tile row's four input rows are first copied into zero-padded buffers, so the loop over
/// the tiles of a row has no bounds checks and no branches: the compiler vectorises it across
/// consecutive tiles.
fn transform_input(
    x: &[f32],
    g: &ConvGeometry,
    t0: usize,
    t1: usize,
    tile_cols: usize,
    v: &mut [f32],
) {
    let n = (t1 - t0) * tile_cols;
    let padded_w = 2 * tile_cols + 2;
    let mut pad = vec![0.0f32; 4 * padded_w];
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ty in t0..t1 {
            // pad[r][1 + j] = x[2·ty − 1 + r][j]; everything else 0.
            pad.fill(0.0);
            for r in 0..4 {
                let iy = (2 * ty + r) as isize - 1;
                if iy >= 0 && (iy as usize) < g.h {
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    pad[r * padded_w + 1..r * padded_w + 1 + g.w].copy_from_slice(src);
                }
            }
            let (p0, rest) = pad.split_at(padded_w);
            let (p1, rest) = rest.split_at(padded_w);
            let (p2, p3) = rest.split_at(padded_w);
            let q0 = (ty - t0) * tile_cols;
            for tx in 0..tile_cols {
                let j = 2 * tx;
                // Bᵀ·d: the four rows combined, column by column.
                let col = |s: usize| {
                    let (d0, d1, d2, d3) = (p0[j + s], p1[j + s], p2[j + s], p3[j + s]);
                    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
                };
                let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
                for i in 0..4 {
                    // (Bᵀ·d)·B on row i.
                    let t = [c0[i] - c2[i], c1[i] + c2[i], c2[i] - c1[i], c1[i] - c3[i]];
                    for (k, val) in t.into_iter().enumerate() {
                        v[((i * 4 + k) * g.c_in + c) * n + q0 + tx] = val;
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
    // Output transform Y = Aᵀ m A per tile, into each output channel plane. A tile row is first
    // written into two full-width row buffers (branch-free over the tiles), then copied.
    let mut y = vec![0.0; g.c_out * g.h * g.w];
    y.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(o, plane)| {
            let b = bias.map_or(0.0, |b| b[o]);
            let mut out_rows = vec![0.0f32; 2 * 2 * tile_cols];
            for (t0, m) in &tiles {
                let n = m.len() / (16 * g.c_out);
                let me: Vec<&[f32]> = (0..16)
                    .map(|e| &m[(e * g.c_out + o) * n..(e * g.c_out + o + 1) * n])
                    .collect();
                for r in 0..n / tile_cols {
                    let (top, bottom) = out_rows.split_at_mut(2 * tile_cols);
                    let q0 = r * tile_cols;
                    for tx in 0..tile_cols {
                        let at = |e: usize| me[e][q0 + tx];
                        // Aᵀ·m (2×4), then ·A on each row.
                        let a0: [f32; 4] = std::array::from_fn(|j| at(j) + at(4 + j) + at(8 + j));
                        let a1: [f32; 4] =
                            std::array::from_fn(|j| at(4 + j) - at(8 + j) - at(12 + j));
                        top[2 * tx] = a0[0] + a0[1] + a0[2] + b;
                        top[2 * tx + 1] = a0[1] - a0[2] - a0[3] + b;
                        bottom[2 * tx] = a1[0] + a1[1] + a1[2] + b;
                        bottom[2 * tx + 1] = a1[1] - a1[2] - a1[3] + b;
                    }
                    let oy = 2 * (t0 + r);
                    for (i, row) in [&*top, &*bottom].into_iter().enumerate() {
                        if oy + i < g.h {
                            plane[(oy + i) * g.w..(oy + i + 1) * g.w].copy_from_slice(&row[..g.w]);
                        }
                    }
                }
            }
        });
    y
}
