//! The Gram product `G = F·Fᵀ` of a feature map: the statistic the style loss compares.
//!
//! `F` is `C×M`, one row per channel over the `M` pixels, so `G[i][j] = Σ_k F[i][k]·F[j][k]` is
//! the dot product of rows `i` and `j`, and `G` is symmetric: only the entries on and above the
//! diagonal are computed (in blocks), then mirrored — half the multiply-adds of a general
//! product.
//!
//! Why not the GEMM: a packed GEMM copies both operands — here the same `F` twice — into its
//! panel layouts, and with only `C` rows and columns of output (64 at relu1_1) each copied value
//! is used only `C` times, so the copies cost about as much as the arithmetic (125 GFLOP/s at
//! relu1_1 on a Zen 5, against 340 at relu4_1; BENCHMARKS.md). Dot products read the rows of `F`
//! where they lie.
//!
//! The blocking, from the registers out:
//! - **register block**: `R` rows against `R` others, `R²` accumulators of `LANES` lanes —
//!   `R = 4` with AVX-512F (16 of its 32 registers), 2 with AVX2 (8 of 16, two registers per
//!   accumulator, written with intrinsics: `dots_2x2_avx2`) and on the baseline;
//! - **cache block**: the rows of two tiles of `TILE` channels over `CHUNK` pixels
//!   (2 × 64 × 2048 floats, 1 MiB; one tile on the diagonal) stay near the core while every
//!   register block of the pair runs over them;
//! - **tasks**: one per pair of tiles (on or above the diagonal) and group of chunks, at least
//!   `MIN_TASKS` of them, each making a partial `TILE × TILE` block; the partials are added
//!   group by group.
//!
//! The summation order of every entry depends on the shape alone: lane `l` of a chunk's
//! accumulator sums the pixels `k ≡ l (mod 16)` in order, the 16 lanes are added by a fixed
//! pairwise tree, then chunk after chunk, group after group. It does not depend on the
//! register block, the instruction set or the thread count, so the AVX2 and AVX-512F builds give
//! the same bits (tested). The baseline build rounds each product before adding it (no FMA
//! there), so its last bits differ.

use super::isa::Isa;
use rayon::prelude::*;

/// Lanes of one accumulator: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;
/// Channels per cache tile.
const TILE: usize = 64;
/// Pixels per cache chunk: two tiles' rows over a chunk are 1 MiB, a Zen 5's L2. The best of six
/// tile × chunk shapes measured on a Zen 5 (15.7 ms for the five VGG16 style layers at 512×384,
/// against 17.1 with 1024 pixels; BENCHMARKS.md); not measured on a processor with less L2.
const CHUNK: usize = 2048;
/// Tasks the work is cut into at least, when the pixels allow: relu1_1's 64 channels are a
/// single tile pair, so its pixels are split into groups instead.
const MIN_TASKS: usize = 8;

/// Lane-wise partial sums of one dot product.
type Lanes = [f32; LANES];

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
    let tiles = c.div_ceil(TILE);
    let pairs: Vec<(usize, usize)> = (0..tiles)
        .flat_map(|ti| (ti..tiles).map(move |tj| (ti, tj)))
        .collect();
    let chunks = m.div_ceil(CHUNK).max(1);
    let groups = MIN_TASKS.div_ceil(pairs.len()).min(chunks);
    let chunks_per_group = chunks.div_ceil(groups);
    let partials: Vec<Vec<f32>> = (0..pairs.len() * groups)
        .into_par_iter()
        .map(|task| {
            let (ti, tj) = pairs[task / groups];
            let group = task % groups;
            let k0 = (group * chunks_per_group * CHUNK).min(m);
            let k1 = ((group + 1) * chunks_per_group * CHUNK).min(m);
            let job = TilePair {
                f,
                m,
                rows_i: tile_rows(ti, c),
                rows_j: tile_rows(tj, c),
                diagonal: ti == tj,
                pixels: (k0, k1),
            };
            let mut block = vec![0.0; TILE * TILE];
            job.run(isa, &mut block);
            block
        })
        .collect();
    let mut g = vec![0.0; c * c];
    for (task, block) in partials.iter().enumerate() {
        let (ti, tj) = pairs[task / groups];
        let (i0, i1) = tile_rows(ti, c);
        let (j0, j1) = tile_rows(tj, c);
        for i in i0..i1 {
            let row = &block[(i - i0) * TILE..];
            for (d, s) in g[i * c + j0..i * c + j1].iter_mut().zip(row) {
                *d += *s;
            }
        }
    }
    // The entries below the diagonal are the ones above it.
    for i in 1..c {
        for j in 0..i {
            g[i * c + j] = g[j * c + i];
        }
    }
    g
}

/// The channels `[start, end)` of tile `t` of `c` channels.
fn tile_rows(t: usize, c: usize) -> (usize, usize) {
    (t * TILE, ((t + 1) * TILE).min(c))
}

/// One task: the dot products of the rows of one tile with those of another over a range of
/// pixels. On a diagonal pair only the register blocks on and above the diagonal are computed.
struct TilePair<'a> {
    /// `F`, row-major `C×M`.
    f: &'a [f32],
    /// `M`, the row length.
    m: usize,
    /// The first tile's channels `[i0, i1)`.
    rows_i: (usize, usize),
    /// The second tile's channels `[j0, j1)`.
    rows_j: (usize, usize),
    /// Whether both tiles are the same.
    diagonal: bool,
    /// The pixels `[k0, k1)`.
    pixels: (usize, usize),
}

impl TilePair<'_> {
    /// Adds the pair's dot products into `block` (`TILE × TILE`, entry `(i − i0, j − j0)`),
    /// compiled for `isa`.
    fn run(&self, isa: Isa, block: &mut [f32]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `gram_with` checked that the processor runs `isa` (`assert_available`):
            // AVX-512F, AVX2 and FMA.
            Isa::Avx512F => unsafe { self.run_avx512(block) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, `Isa::Avx2Fma` means the processor has AVX2 and FMA.
            Isa::Avx2Fma => unsafe { self.run_avx2(block) },
            _ => self.run_body::<2, 4, false, false>(block),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn run_avx512(&self, block: &mut [f32]) {
        self.run_body::<4, 16, true, false>(block)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2(&self, block: &mut [f32]) {
        self.run_body::<2, 4, true, true>(block)
    }

    /// [`TilePair::run`] with `R×R` register blocks (`N = R²` accumulators), multiply-adds
    /// fused if `FUSED`, full blocks by [`dots_2x2_avx2`] if `AVX2` (with `R = 2`) and by
    /// [`dots`] otherwise. Rows left over at a tile's edge (fewer than `R`) are done one dot
    /// product at a time by [`dots`], in the same order.
    #[inline(always)]
    fn run_body<const R: usize, const N: usize, const FUSED: bool, const AVX2: bool>(
        &self,
        block: &mut [f32],
    ) {
        const { assert!(N == R * R && (!AVX2 || (R == 2 && FUSED))) };
        let ((i0, i1), (j0, j1), (k0, k1)) = (self.rows_i, self.rows_j, self.pixels);
        let (f, m) = (self.f, self.m);
        for kc in (k0..k1).step_by(CHUNK) {
            let ke = (kc + CHUNK).min(k1);
            for ib in (i0..i1).step_by(R) {
                let first_j = if self.diagonal { ib } else { j0 };
                for jb in (first_j..j1).step_by(R) {
                    // Entry (r, s) of this register block is block[at + r·TILE + s].
                    let at = (ib - i0) * TILE + (jb - j0);
                    if ib + R <= i1 && jb + R <= j1 {
                        let mut a: [&[f32]; R] = [&[]; R];
                        let mut b: [&[f32]; R] = [&[]; R];
                        for r in 0..R {
                            a[r] = &f[(ib + r) * m + kc..(ib + r) * m + ke];
                            b[r] = &f[(jb + r) * m + kc..(jb + r) * m + ke];
                        }
                        let mut sums = [0.0; N];
                        #[cfg(target_arch = "x86_64")]
                        if AVX2 {
                            // SAFETY: `AVX2` is only set by `run_avx2`, which runs only on a
                            // processor with AVX2 and FMA.
                            let s = unsafe { dots_2x2_avx2([a[0], a[1]], [b[0], b[1]]) };
                            sums.copy_from_slice(&s);
                        }
                        if !AVX2 {
                            sums = dots::<R, N, FUSED>(a, b);
                        }
                        for r in 0..R {
                            for s in 0..R {
                                block[at + r * TILE + s] += sums[r * R + s];
                            }
                        }
                    } else {
                        for r in 0..R.min(i1 - ib) {
                            for s in 0..R.min(j1 - jb) {
                                let a = &f[(ib + r) * m + kc..(ib + r) * m + ke];
                                let b = &f[(jb + s) * m + kc..(jb + s) * m + ke];
                                let [sum] = dots::<1, 1, FUSED>([a], [b]);
                                block[at + r * TILE + s] += sum;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `R²` dot products of the rows `a[r]` with the rows `b[s]` (all of one length), entry
/// `r·R + s`: lane-wise partial sums over the full [`LANES`]-wide steps and a zero-padded last
/// one, then each accumulator's lanes added by [`sum_lanes`]. (Loops, not closures: a closure
/// would not inherit the caller's target features.)
#[inline(always)]
fn dots<const R: usize, const N: usize, const FUSED: bool>(
    a: [&[f32]; R],
    b: [&[f32]; R],
) -> [f32; N] {
    let len = a[0].len();
    // Equal lengths, said once, let the compiler drop the bounds checks in the loop.
    for r in 0..R {
        assert!(
            a[r].len() == len && b[r].len() == len,
            "gram: rows differ in length"
        );
    }
    let mut acc = [[0.0f32; LANES]; N];
    let (mut av, mut bv) = ([[0.0f32; LANES]; R], [[0.0f32; LANES]; R]);
    let mut k = 0;
    while k + LANES <= len {
        for r in 0..R {
            av[r] = load(&a[r][k..k + LANES]);
            bv[r] = load(&b[r][k..k + LANES]);
        }
        multiply_add::<R, N, FUSED>(&mut acc, &av, &bv);
        k += LANES;
    }
    if k < len {
        for r in 0..R {
            av[r] = load_padded(&a[r][k..]);
            bv[r] = load_padded(&b[r][k..]);
        }
        multiply_add::<R, N, FUSED>(&mut acc, &av, &bv);
    }
    sum_lanes(acc)
}

/// [`dots`] for a 2×2 block with AVX2 + FMA intrinsics. The compiler turns [`dots`]' 16-lane
/// arrays into AVX-512 registers well, but not into pairs of AVX2 ones (measured: relu4_1's Gram
/// 43 ms that way, BENCHMARKS.md); here each 16-lane accumulator is written as the two 8-lane
/// registers it is — lanes 0–7 and 8–15 — so the arithmetic, and the bits, are [`dots`]'.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_2x2_avx2(a: [&[f32]; 2], b: [&[f32]; 2]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let len = a[0].len();
    assert!(
        a[1].len() == len && b[0].len() == len && b[1].len() == len,
        "gram: rows differ in length"
    );
    // acc[h][r·2 + s]: lanes 8h … 8h + 7 of the dot product of a[r] and b[s].
    let mut acc = [[_mm256_setzero_ps(); 4]; 2];
    let (mut a_pad, mut b_pad) = ([[0.0f32; LANES]; 2], [[0.0f32; LANES]; 2]);
    let mut k = 0;
    while k < len {
        // Pointers to 16 floats of each row: in place, or the zero-padded last step.
        let (pa, pb) = if k + LANES <= len {
            (
                [a[0][k..].as_ptr(), a[1][k..].as_ptr()],
                [b[0][k..].as_ptr(), b[1][k..].as_ptr()],
            )
        } else {
            for r in 0..2 {
                a_pad[r] = load_padded(&a[r][k..]);
                b_pad[r] = load_padded(&b[r][k..]);
            }
            (
                [a_pad[0].as_ptr(), a_pad[1].as_ptr()],
                [b_pad[0].as_ptr(), b_pad[1].as_ptr()],
            )
        };
        for (h, acc) in acc.iter_mut().enumerate() {
            // SAFETY: each pointer is to at least 16 floats (checked above), so the 8 at 8h
            // are in bounds.
            let (a0, a1, b0, b1) = unsafe {
                (
                    _mm256_loadu_ps(pa[0].add(8 * h)),
                    _mm256_loadu_ps(pa[1].add(8 * h)),
                    _mm256_loadu_ps(pb[0].add(8 * h)),
                    _mm256_loadu_ps(pb[1].add(8 * h)),
                )
            };
            acc[0] = _mm256_fmadd_ps(a0, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(a0, b1, acc[1]);
            acc[2] = _mm256_fmadd_ps(a1, b0, acc[2]);
            acc[3] = _mm256_fmadd_ps(a1, b1, acc[3]);
        }
        k += LANES;
    }
    let mut lanes = [[0.0f32; LANES]; 4];
    for (h, acc) in acc.into_iter().enumerate() {
        for (out, half) in lanes.iter_mut().zip(acc) {
            // SAFETY: `out` is 16 floats, so lanes 8h … 8h + 7 are in it.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * h), half) };
        }
    }
    sum_lanes(lanes)
}

/// `acc[r·R + s] += a[r] ⊙ b[s]`, lane by lane, fused if `FUSED`.
#[inline(always)]
fn multiply_add<const R: usize, const N: usize, const FUSED: bool>(
    acc: &mut [Lanes; N],
    a: &[Lanes; R],
    b: &[Lanes; R],
) {
    for r in 0..R {
        for s in 0..R {
            let acc = &mut acc[r * R + s];
            for l in 0..LANES {
                acc[l] = if FUSED {
                    a[r][l].mul_add(b[s][l], acc[l])
                } else {
                    a[r][l] * b[s][l] + acc[l]
                };
            }
        }
    }
}

/// [`LANES`] values.
#[inline(always)]
fn load(s: &[f32]) -> Lanes {
    *s.first_chunk::<LANES>().expect("a full step")
}

/// The values of `s` (fewer than [`LANES`]), then zeros.
#[inline(always)]
fn load_padded(s: &[f32]) -> Lanes {
    let mut l = [0.0; LANES];
    l[..s.len()].copy_from_slice(s);
    l
}

/// The sum of each accumulator's lanes, by the pairwise tree `(l, l+8)`, `(l, l+4)`, `(l, l+2)`,
/// `(l, l+1)`: the same tree for every `N`, so an entry's bits do not depend on how many were
/// summed together.
///
/// All `N` are summed at once, the way a transpose is done: each level halves the lanes every
/// accumulator occupies and packs two vectors' worth into one ([`halve`]), so 16 accumulators
/// take 15 vector additions (and their shuffles) instead of 16 × 4 horizontal steps. After the last level lane `a`
/// holds accumulator `a`'s sum.
#[inline(always)]
fn sum_lanes<const N: usize>(acc: [Lanes; N]) -> [f32; N] {
    // One call per level with its width a constant, so that every loop unrolls into shuffles
    // and additions on registers.
    let mut v = acc;
    let count = fold::<N, 16>(&mut v, N);
    let count = fold::<N, 8>(&mut v, count);
    let count = fold::<N, 4>(&mut v, count);
    fold::<N, 2>(&mut v, count);
    let mut sums = [0.0; N];
    sums.copy_from_slice(&v[0][..N]);
    sums
}

/// One level of [`sum_lanes`]: the first `count` vectors of `v`, whose accumulators occupy
/// `WIDTH` lanes each, paired up by [`halve`] into the first `count / 2` (at least one); returns
/// that count.
#[inline(always)]
fn fold<const N: usize, const WIDTH: usize>(v: &mut [Lanes; N], count: usize) -> usize {
    let next = (count / 2).max(1);
    for p in 0..next {
        v[p] = halve::<WIDTH>(v[2 * p], v[(2 * p + 1).min(count - 1)]);
    }
    next
}

/// `x` and `y` hold segments of `WIDTH` lanes, one accumulator each; the result holds each of
/// `x`'s segments folded to `WIDTH / 2` lanes (lane `l` plus lane `l + WIDTH/2`) in its first
/// half, and `y`'s in its second.
#[inline(always)]
fn halve<const WIDTH: usize>(x: Lanes, y: Lanes) -> Lanes {
    let half = WIDTH / 2;
    let mut z = [0.0; LANES];
    for seg in 0..LANES / WIDTH {
        for l in 0..half {
            let (at, from) = (seg * half + l, seg * WIDTH + l);
            z[at] = x[from] + x[from + half];
            z[LANES / 2 + at] = y[from] + y[from + half];
        }
    }
    z
}
