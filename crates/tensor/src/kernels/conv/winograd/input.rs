//! The input transform: `V_e = (Bᵀ d B)_e` for every 6×6 input tile `d` of a band, channel by
//! channel, written where the band's 36 products read it.

use super::lanes::{block_start, Lanes, LANES};
use super::transforms::input_1d;
use super::{give_work, take_work, M, T};
use crate::kernels::conv::{ConvGeometry, Source};
use crate::kernels::isa::Isa;

/// `V_e[c][q] = (Bᵀ d B)_e` for channels `[c0, c1)` and the tiles `q` of tile rows `[t0, t1)`,
/// where `d` is the 6×6 input patch at rows `4·ty − 1 …`, columns `4·tx − 1 …` (zero outside).
/// `v[e]` holds rows `c0..c1` of `V_e` (`(c1 − c0) × n`, `n` the band's tile count). Compiled
/// for `isa`.
pub(super) fn transform_input(
    isa: Isa,
    x: Source,
    g: &ConvGeometry,
    band: Band,
    v: &mut [&mut [f32]],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `convolve` checked that the processor runs `isa` (`assert_available`), and
        // both levels include AVX2 and FMA, so the AVX2 build runs on a processor that has them.
        Isa::Avx2Fma | Isa::Avx512F => unsafe { transform_input_avx2(x, g, band, v) },
        _ => transform_input_body::<false>(x, g, band, v),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transform_input_avx2(x: Source, g: &ConvGeometry, band: Band, v: &mut [&mut [f32]]) {
    transform_input_body::<true>(x, g, band, v)
}

/// The work of one input-transform task: tile rows `[t0, t1)` of `tile_cols` tiles, channels
/// `[c0, c1)`.
#[derive(Clone, Copy)]
pub(super) struct Band {
    pub(super) t0: usize,
    pub(super) t1: usize,
    pub(super) tile_cols: usize,
    pub(super) c0: usize,
    pub(super) c1: usize,
    /// Read every input plane rotated by 180° (its values reversed), for
    /// [`input_gradient`](super::input_gradient).
    pub(super) reversed: bool,
}

/// See [`transform_input`]. The six input rows of a tile row are first split by column phase:
/// `p[r][s][t]` holds column `4·t + s − 1` of row `r` (zero outside the image), so tile `t`
/// reads `p[·][0..4][t]` and `p[·][0..2][t + 1]`. Both passes — `Bᵀ·` down the columns, then
/// `·B` along each tile's six columns — then read and write [`LANES`] consecutive tiles at a
/// time. `AVX2` says the caller runs with AVX2 + FMA (the phase split then uses shuffles).
#[inline(always)]
fn transform_input_body<const AVX2: bool>(
    x: Source,
    g: &ConvGeometry,
    b: Band,
    v: &mut [&mut [f32]],
) {
    let tc = b.tile_cols;
    let n = (b.t1 - b.t0) * tc;
    let blocks = tc.div_ceil(LANES);
    // A phase holds every block's lanes plus one more block for the `t + 1` reads.
    let pl = (blocks + 1) * LANES;
    let len = M * pl;
    // The column phases, the same after `Bᵀ·`, one input row with a zero column in front and
    // zeros after (row[1 + j] = x[·][j]), and an unpooled or masked source's row, made here
    // before it is copied.
    let made_len = match x {
        Source::Planes(_) => 0,
        Source::Unpooled { .. } | Source::Masked { .. } => g.w,
    };
    // The build a made row's masking runs in: this one's.
    let isa = if AVX2 { Isa::Avx2Fma } else { Isa::Baseline };
    let mut work = take_work([T * len, T * len, len, made_len]);
    let [p, vt, row, made] = &mut work;
    row[0] = 0.0;
    row[g.w + 1..].fill(0.0);
    for c in b.c0..b.c1 {
        for ty in b.t0..b.t1 {
            for (r, rows) in p.chunks_exact_mut(len).enumerate() {
                let iy = (M * ty + r) as isize - 1;
                if iy < 0 || iy as usize >= g.h {
                    rows.fill(0.0);
                    continue;
                }
                let src = if b.reversed {
                    g.h - 1 - iy as usize
                } else {
                    iy as usize
                };
                // Ask for the row the thread's next band will read at this point (one band's
                // rows on; each thread runs its bands in order) while this one is transformed:
                // each channel's rows are read in runs too short for the hardware prefetchers,
                // and mostly from memory. One band ahead measured better than two.
                let ahead = iy as usize + M * (b.t1 - b.t0);
                if ahead < g.h {
                    let ya = if b.reversed { g.h - 1 - ahead } else { ahead };
                    x.prefetch_row((g.h, g.w), c, ya);
                }
                // And the row the next channel of this task reads at this point, a few
                // microseconds on: the band-ahead request has often left the nearer caches by
                // then.
                if c + 1 < b.c1 {
                    x.prefetch_row((g.h, g.w), c + 1, src);
                }
                let dst = &mut row[1..=g.w];
                let src = match x {
                    Source::Planes(x) => &x[(c * g.h + src) * g.w..][..g.w],
                    _ => {
                        x.read_row(isa, (g.h, g.w), c, src, made);
                        &made[..]
                    }
                };
                if b.reversed {
                    for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                        *d = *s;
                    }
                } else {
                    dst.copy_from_slice(src);
                }
                // phase s, entry t = row[4·t + s] = x[·][4·t + s − 1].
                split_phases::<AVX2>(row, rows);
            }
            // Bᵀ·d down the columns: vt[i] = Σ_r Bᵀ[i][r]·p[r], over every phase and tile.
            for j in (0..len).step_by(LANES) {
                let d: [Lanes; T] = std::array::from_fn(|r| Lanes::at(p, r * len + j));
                for (i, val) in input_1d(d).into_iter().enumerate() {
                    val.put(vt, i * len + j);
                }
            }
            // ·B along each tile's six columns.
            // This channel's row of V_e starts at `base`; the tile row's tiles follow.
            let base = (c - b.c0) * n + (ty - b.t0) * tc;
            for i in 0..T {
                // Phase s of row i (`pl` values: every block, and one more for the `t + 1`
                // reads), and this tile row's part of the six V_e that row i feeds.
                let ph: [&[f32]; M] = std::array::from_fn(|s| &vt[i * len + s * pl..][..pl]);
                let [v0, v1, v2, v3, v4, v5] = &mut v[i * T..(i + 1) * T] else {
                    unreachable!("six rows of V per row of the tile")
                };
                let mut dst = [v0, v1, v2, v3, v4, v5].map(|r| &mut r[base..base + tc]);
                for t in (0..tc).step_by(LANES) {
                    let t = block_start(t, tc);
                    let d = [
                        Lanes::at(ph[0], t),
                        Lanes::at(ph[1], t),
                        Lanes::at(ph[2], t),
                        Lanes::at(ph[3], t),
                        Lanes::at(ph[0], t + 1),
                        Lanes::at(ph[1], t + 1),
                    ];
                    let out = input_1d(d);
                    if t + LANES <= tc {
                        for (val, row) in out.into_iter().zip(&mut dst) {
                            val.put(row, t);
                        }
                    } else {
                        for (val, row) in out.into_iter().zip(&mut dst) {
                            val.store(&mut row[t..]);
                        }
                    }
                }
            }
        }
    }
    give_work(work);
}

/// Splits a row of `4·n` values by column phase into `phases` (`4·n` values, `n` a multiple of
/// [`LANES`]): `phases[s·n + t] = row[4·t + s]` — the columns each tile's `s`-th column comes
/// from, for [`LANES`] neighbouring tiles at a time. With `AVX2`, 8 tiles' 32 values are
/// transposed in registers (4 loads, 12 shuffles, 4 stores) instead of moved one by one.
#[inline(always)]
fn split_phases<const AVX2: bool>(row: &[f32], phases: &mut [f32]) {
    let n = phases.len() / M;
    assert!(
        row.len() == M * n && n.is_multiple_of(LANES),
        "split_phases: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is only set on the paths the AVX2 builds take, which run only after the
        // processor reported AVX2 and FMA.
        return unsafe { split_phases_avx2(row, phases) };
    }
    let (p0, rest) = phases.split_at_mut(n);
    let (p1, rest) = rest.split_at_mut(n);
    let (p2, p3) = rest.split_at_mut(n);
    let phases = p0.iter_mut().zip(p1).zip(p2).zip(p3);
    for (q, (((s0, s1), s2), s3)) in row.chunks_exact(M).zip(phases) {
        (*s0, *s1, *s2, *s3) = (q[0], q[1], q[2], q[3]);
    }
}

/// [`split_phases`] with AVX2 shuffles: for tiles `t..t + 8`, the four loaded registers hold
/// tiles (t, t+1), (t+2, t+3), (t+4, t+5), (t+6, t+7), four columns each; 128-bit halves are
/// regrouped as (t, t+4), (t+1, t+5), (t+2, t+6), (t+3, t+7), and a 4×4 transpose within each
/// half leaves column `s` of the eight tiles in register `s`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn split_phases_avx2(row: &[f32], phases: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = phases.len() / M;
    for t in (0..n).step_by(LANES) {
        let src = &row[M * t..M * (t + LANES)];
        // SAFETY: `src` holds 32 values, and each store below writes 8 values at `s·n + t`,
        // `t + 8 ≤ n` (n is a multiple of 8), inside `phases` (4·n values).
        unsafe {
            let a0 = _mm256_loadu_ps(src.as_ptr());
            let a1 = _mm256_loadu_ps(src.as_ptr().add(8));
            let a2 = _mm256_loadu_ps(src.as_ptr().add(16));
            let a3 = _mm256_loadu_ps(src.as_ptr().add(24));
            let e0 = _mm256_permute2f128_ps::<0x20>(a0, a2);
            let e1 = _mm256_permute2f128_ps::<0x31>(a0, a2);
            let e2 = _mm256_permute2f128_ps::<0x20>(a1, a3);
            let e3 = _mm256_permute2f128_ps::<0x31>(a1, a3);
            let (x0, x1) = (_mm256_unpacklo_ps(e0, e1), _mm256_unpacklo_ps(e2, e3));
            let (x2, x3) = (_mm256_unpackhi_ps(e0, e1), _mm256_unpackhi_ps(e2, e3));
            let out = phases.as_mut_ptr().add(t);
            _mm256_storeu_ps(out, _mm256_shuffle_ps::<0x44>(x0, x1));
            _mm256_storeu_ps(out.add(n), _mm256_shuffle_ps::<0xEE>(x0, x1));
            _mm256_storeu_ps(out.add(2 * n), _mm256_shuffle_ps::<0x44>(x2, x3));
            _mm256_storeu_ps(out.add(3 * n), _mm256_shuffle_ps::<0xEE>(x2, x3));
        }
    }
}
