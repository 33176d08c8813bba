//! The Gram product `G = F·Fᵀ` of a feature map: the statistic the style loss compares.
//!
//! `F` is `C×M`, one row per channel over the `M` pixels, so `G[i][j] = Σ_k F[i][k]·F[j][k]`,
//! and `G` is symmetric: only the entries on and above the diagonal are computed (in blocks),
//! then mirrored — half the multiply-adds of a general product (a *SYRK*, in BLAS's words).
//!
//! It is computed as a sum of outer products, one per pixel: `G = Σ_k f_k f_kᵀ`, with `f_k`
//! column `k` of `F` (the `C` channel values of pixel `k`). A register block holds `R` vectors
//! of `W` rows of `G` (`W` lanes each) for `STRIP` columns; per pixel it loads the `R` vectors of
//! `f_k` and multiplies each by the `STRIP` values of `f_k` it pairs with (broadcast from
//! memory): `R·STRIP` multiply-adds per `R` vector loads. The earlier kernel took dot products
//! along the rows of `F`, vectors running over pixels: an `R×R` block loaded `2R` vectors for
//! `R²` multiply-adds, more than the L2 cache could feed (the five VGG16 style layers at 512×384
//! on a Zen 5 went from 17.8 to 12.4 ms, criterion; BENCHMARKS.md).
//!
//! So that `f_k` is contiguous, `F` is *packed*: a chunk of `CHUNK` (128) pixels at a time is
//! transposed into panels of `PANEL` (64) channels, `packed[panel][k][i]` (8×8 register transposes
//! with AVX2), zero rows padding the last panel. A panel's chunk (32 KiB) stays in the L1 cache
//! while the register blocks of its row of `G` run over it.
//!
//! The blocking, from the registers out:
//! - **register block**: `R ≤ 4` vectors × 4 columns (16 accumulators) with AVX-512F (16 lanes);
//!   `R ≤ 2` × 4 with AVX2 (8 lanes, 8 of 16 registers) and on the baseline; on a diagonal block
//!   only the vectors that reach the diagonal;
//! - **chunk**: every block of the upper triangle over `CHUNK` (128) pixels, its sums then added to
//!   the task's partial `G`;
//! - **tasks**: up to `MIN_TASKS` (8) groups of whole chunks (as many as the chunks allow), one
//!   partial `G` each, added group by group.
//!
//! The summation order of every entry depends on the shape alone: within a chunk the pixels in
//! order (one lane, one chain of multiply-adds), then chunk after chunk, group after group. It
//! does not depend on the register block, the instruction set or the thread count, so the AVX2
//! and AVX-512F builds give the same bits (tested). The baseline build rounds each product
//! before adding it (no FMA there), so its last bits differ.

use super::isa::Isa;
use super::prefetch;
use rayon::prelude::*;

/// Channels per packed panel: the rows of `G` four AVX-512 registers hold.
const PANEL: usize = 64;
/// Columns of `G` per register block.
const STRIP: usize = 4;
/// Pixels per packed chunk: a panel's chunk is `PANEL × CHUNK` floats, 32 KiB — an L1 cache.
const CHUNK: usize = 128;
/// Tasks the work is cut into: this many groups of whole chunks, or as many as there are chunks
/// (fewer when chunks do not divide evenly: 9 chunks make 5 groups of 2 or 1).
const MIN_TASKS: usize = 8;

/// The unnormalised Gram matrix `F·Fᵀ` (`C×C`, row-major) of a row-major `F: C×M`, with the
/// widest build this processor runs ([`Isa::detect`]).
pub fn gram(f: &[f32], c: usize, m: usize) -> Vec<f32> {
    gram_with(Isa::detect(), f, c, m)
}

/// [`gram`] compiled for `isa`, which the processor must support ([`Isa::available`]).
pub fn gram_with(isa: Isa, f: &[f32], c: usize, m: usize) -> Vec<f32> {
    isa.assert_available("gram");
    assert_eq!(f.len(), c * m, "gram: F is not C×M");
    if c == 0 {
        return Vec::new();
    }
    let padded = c.div_ceil(PANEL) * PANEL;
    let chunks = m.div_ceil(CHUNK).max(1);
    let per_group = chunks.div_ceil(MIN_TASKS);
    let groups = chunks.div_ceil(per_group);
    // Each group's sums, transposed: entry (i, j) of G, i ≤ j, at [j·padded + i].
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|group| {
            let k0 = (group * per_group * CHUNK).min(m);
            let k1 = ((group + 1) * per_group * CHUNK).min(m);
            let mut part = vec![0.0; padded * padded];
            let mut packed = vec![0.0; padded * CHUNK];
            for kc in (k0..k1).step_by(CHUNK) {
                let len = CHUNK.min(k1 - kc);
                pack(isa, f, c, m, kc, len, &mut packed);
                add_chunk(isa, &packed, padded, len, &mut part);
            }
            part
        })
        .collect();
    let mut g = vec![0.0; c * c];
    g.par_chunks_mut(c).enumerate().for_each(|(j, row)| {
        for part in &partials {
            for (d, s) in row[..=j].iter_mut().zip(&part[j * padded..]) {
                *d += *s;
            }
        }
    });
    // Row j holds the entries (i, j), i ≤ j: below the diagonal. Those above are the same.
    for i in 0..c {
        for j in i + 1..c {
            g[i * c + j] = g[j * c + i];
        }
    }
    g
}

/// Transposes pixels `[kc, kc + len)` of `F` into `packed[panel][k][i]` (`PANEL` channels a
/// row, a panel every `CHUNK` rows; channels past `c` are zeros).
fn pack(isa: Isa, f: &[f32], c: usize, m: usize, kc: usize, len: usize, packed: &mut [f32]) {
    // The pixels of the next chunk, packed next.
    let next = (kc + CHUNK).min(m)..(kc + 2 * CHUNK).min(m);
    for (p, panel) in packed.chunks_exact_mut(PANEL * CHUNK).enumerate() {
        for i0 in (0..PANEL).step_by(8) {
            let first = p * PANEL + i0;
            // These rows' part of it: too many rows at once (a panel's 64) for the processor's
            // prefetcher to follow.
            for ch in first..(first + 8).min(c) {
                prefetch::slice(&f[ch * m + next.start..ch * m + next.end]);
            }
            let mut k = 0;
            #[cfg(target_arch = "x86_64")]
            if isa >= Isa::Avx2Fma && first + 8 <= c {
                // SAFETY: `gram_with` checked that the processor runs `isa` (at least AVX2).
                k = unsafe { pack_8x8_avx2(f, m, first, kc, len, &mut panel[i0..]) };
            }
            for k in k..len {
                for i in 0..8 {
                    let ch = first + i;
                    panel[k * PANEL + i0 + i] = if ch < c { f[ch * m + kc + k] } else { 0.0 };
                }
            }
        }
    }
}

/// [`pack`]'s rows `first … first + 7` (all channels of `F`) for pixels `[kc, kc + k)`, the
/// largest multiple `k ≤ len` of 8, by 8×8 register transposes into `out[k·PANEL + i]`; returns
/// `k`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn pack_8x8_avx2(
    f: &[f32],
    m: usize,
    first: usize,
    kc: usize,
    len: usize,
    out: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let whole = len - len % 8;
    // (Loops, not closures: a closure would not inherit this function's target features.)
    let mut rows: [&[f32]; 8] = [&[]; 8];
    for (i, row) in rows.iter_mut().enumerate() {
        *row = &f[(first + i) * m + kc..][..whole];
    }
    let mut r = [_mm256_setzero_ps(); 8];
    for k in (0..whole).step_by(8) {
        for (r, row) in r.iter_mut().zip(&rows) {
            let at: &[f32; 8] = row[k..k + 8].try_into().expect("8 floats");
            // SAFETY: `at` is 8 floats.
            *r = unsafe { _mm256_loadu_ps(at.as_ptr()) };
        }
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        // Column j of the 8×8 block: pixel k + j of the 8 channels.
        let cols = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (j, col) in cols.into_iter().enumerate() {
            let at = &mut out[(k + j) * PANEL..][..8];
            // SAFETY: `at` is 8 floats.
            unsafe { _mm256_storeu_ps(at.as_mut_ptr(), col) };
        }
    }
    whole
}

/// Adds the upper triangle of `f_k f_kᵀ` over the `len` pixels of a packed chunk to `part`
/// (transposed: entry (i, j) at `[j·padded + i]`), compiled for `isa`.
fn add_chunk(isa: Isa, packed: &[f32], padded: usize, len: usize, part: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `gram_with` checked that the processor runs `isa`: AVX-512F, AVX2 and FMA.
        Isa::Avx512F => unsafe { add_chunk_avx512(packed, padded, len, part) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, `Isa::Avx2Fma` means the processor has AVX2 and FMA.
        Isa::Avx2Fma => unsafe { add_chunk_avx2(packed, padded, len, part) },
        _ => add_chunk_body::<8, 2, false>(packed, padded, len, part),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn add_chunk_avx512(packed: &[f32], padded: usize, len: usize, part: &mut [f32]) {
    add_chunk_body::<16, 4, true>(packed, padded, len, part)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_chunk_avx2(packed: &[f32], padded: usize, len: usize, part: &mut [f32]) {
    add_chunk_body::<8, 2, true>(packed, padded, len, part)
}

/// [`add_chunk`] with `W` lanes a vector, at most `RMAX` vectors a register block, multiply-adds
/// fused if `FUSED`. For each pair of panels `p ≤ q` and each strip of `STRIP` columns of panel
/// `q`, the rows of panel `p` — on the diagonal (`p = q`) only the vectors that reach the
/// strip's last column.
#[inline(always)]
fn add_chunk_body<const W: usize, const RMAX: usize, const FUSED: bool>(
    packed: &[f32],
    padded: usize,
    len: usize,
    part: &mut [f32],
) {
    let panels = padded / PANEL;
    for p in 0..panels {
        let a = &packed[p * PANEL * CHUNK..][..PANEL * len];
        for q in p..panels {
            let b = &packed[q * PANEL * CHUNK..][..PANEL * len];
            for j0 in (0..PANEL).step_by(STRIP) {
                let vectors = if p == q {
                    (j0 + STRIP).div_ceil(W)
                } else {
                    PANEL / W
                };
                // Entry (p·PANEL + r, q·PANEL + j0 + s) at out[s·padded + r].
                let at = (q * PANEL + j0) * padded + p * PANEL;
                let mut v = 0;
                while v < vectors {
                    let out = &mut part[at + v * W..];
                    match (vectors - v).min(RMAX) {
                        4 => block::<4, W, FUSED>(a, b, v * W, j0, padded, out),
                        3 => block::<3, W, FUSED>(a, b, v * W, j0, padded, out),
                        2 => block::<2, W, FUSED>(a, b, v * W, j0, padded, out),
                        _ => block::<1, W, FUSED>(a, b, v * W, j0, padded, out),
                    }
                    v += RMAX.min(vectors - v);
                }
            }
        }
    }
}

/// One register block: rows `i0 … i0 + R·W − 1` of panel chunk `a` against columns
/// `j0 … j0 + STRIP − 1` of panel chunk `b`, over every pixel of the chunk (`a` and `b` hold
/// `PANEL` floats a pixel), added to `out[s·stride + r]`.
#[inline(always)]
fn block<const R: usize, const W: usize, const FUSED: bool>(
    a: &[f32],
    b: &[f32],
    i0: usize,
    j0: usize,
    stride: usize,
    out: &mut [f32],
) {
    let mut acc = [[[0.0f32; W]; R]; STRIP];
    for (fa, fb) in a.chunks_exact(PANEL).zip(b.chunks_exact(PANEL)) {
        let rows: &[f32; PANEL] = fa.try_into().expect("a panel row");
        let cols: &[f32; PANEL] = fb.try_into().expect("a panel row");
        let mut x = [[0.0f32; W]; R];
        for (r, x) in x.iter_mut().enumerate() {
            x.copy_from_slice(&rows[i0 + r * W..i0 + (r + 1) * W]);
        }
        for (s, acc) in acc.iter_mut().enumerate() {
            let y = cols[j0 + s];
            for (acc, x) in acc.iter_mut().zip(&x) {
                for (acc, x) in acc.iter_mut().zip(x) {
                    *acc = if FUSED {
                        x.mul_add(y, *acc)
                    } else {
                        x * y + *acc
                    };
                }
            }
        }
    }
    for (s, acc) in acc.iter().enumerate() {
        for (r, acc) in acc.iter().enumerate() {
            let row: &mut [f32; W] = (&mut out[s * stride + r * W..][..W])
                .try_into()
                .expect("W floats");
            for (d, v) in row.iter_mut().zip(acc) {
                *d += *v;
            }
        }
    }
}
