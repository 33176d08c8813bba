//! The transforms' arithmetic: `Bᵀ·d`, `G·g` and `Aᵀ·m` on one column (or row) of a tile — the
//! matrices of the module documentation, written out — and the filters' transform `U = G g Gᵀ`,
//! made once per set of weights.

use super::lanes::Lanes;
use super::{E, M, T};
use rayon::prelude::*;

/// `Bᵀ·d` for one column (or row) `d` of a 6×6 input tile, for [`LANES`](super::lanes::LANES)
/// tiles at once.
#[inline(always)]
pub(super) fn input_1d(d: [Lanes; T]) -> [Lanes; T] {
    [
        d[0] * 4.0 - d[2] * 5.0 + d[4],
        d[3] + d[4] - (d[1] + d[2]) * 4.0,
        d[4] - d[3] + (d[1] - d[2]) * 4.0,
        d[4] - d[2] + (d[3] - d[1]) * 2.0,
        d[4] - d[2] + (d[1] - d[3]) * 2.0,
        d[1] * 4.0 - d[3] * 5.0 + d[5],
    ]
}

/// `G·g` for one column (or row) `g` of a 3×3 filter.
fn filter_1d(g: [f32; 3]) -> [f32; T] {
    [
        g[0] / 4.0,
        -(g[0] + g[1] + g[2]) / 6.0,
        -(g[0] - g[1] + g[2]) / 6.0,
        g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0,
        g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0,
        g[2],
    ]
}

/// `Aᵀ·m` for one column (or row) `m` of a 6×6 product tile, for
/// [`LANES`](super::lanes::LANES) tiles at once.
#[inline(always)]
pub(super) fn output_1d(m: [Lanes; T]) -> [Lanes; M] {
    let (s12, d12) = (m[1] + m[2], m[1] - m[2]);
    let (s34, d34) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + s12 + s34,
        d12 + d34 * 2.0,
        s12 + s34 * 4.0,
        d12 + d34 * 8.0 + m[5],
    ]
}

/// The filters in the Winograd domain, `U = G g Gᵀ` for every filter `g = w[o][c]`, stored
/// `[36][C_out][C_in]` (position-major, so each GEMM reads one contiguous `C_out × C_in` matrix).
pub fn transform_filters(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let per_filter: Vec<[f32; E]> = w
        .par_chunks_exact(9)
        .map(|g| {
            // G·g column by column (6×3), then ·Gᵀ row by row (6×6).
            let cols: [[f32; T]; 3] =
                std::array::from_fn(|v| filter_1d([g[v], g[3 + v], g[6 + v]]));
            let mut u = [0.0; E];
            for i in 0..T {
                let row = filter_1d([cols[0][i], cols[1][i], cols[2][i]]);
                u[i * T..(i + 1) * T].copy_from_slice(&row);
            }
            u
        })
        .collect();
    let mut u = vec![0.0; E * c_out * c_in];
    u.par_chunks_mut(c_out * c_in)
        .enumerate()
        .for_each(|(e, ue)| {
            for (dst, src) in ue.iter_mut().zip(&per_filter) {
                *dst = src[e];
            }
        });
    u
}

/// The position of the transformed filters that multiplies position `e = 6·i + j` of the
/// domain: `e` itself, or, for filters applied transposed (`ConvGeometry::transposed`),
/// `6·j + i` — the transform of a transposed filter is the transposed transform,
/// `G gᵀ Gᵀ = (G g Gᵀ)ᵀ`, so the same `U` serves both orientations.
pub(super) fn filter_position(e: usize, transposed: bool) -> usize {
    if transposed {
        (e % T) * T + e / T
    } else {
        e
    }
}
