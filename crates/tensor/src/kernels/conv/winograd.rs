//! Winograd's minimal filtering F(4×4, 3×3) for 3×3 convolutions with padding 1
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 4×4 output tile is computed from a 6×6 input tile `d` (the tile and a one-pixel ring)
//! as `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, summed over input channels, with the interpolation
//! points 0, ±1, ±2, ∞:
//!
//! ```text
//!      ⎡4  0 −5  0  1  0⎤        ⎡ 1/4    0     0 ⎤
//!      ⎢0 −4 −4  1  1  0⎥        ⎢−1/6 −1/6  −1/6 ⎥        ⎡1  1  1  1  1  0⎤
//! Bᵀ = ⎢0  4 −4 −1  1  0⎥    G = ⎢−1/6  1/6  −1/6 ⎥   Aᵀ = ⎢0  1 −1  2 −2  0⎥
//!      ⎢0 −2 −1  2  1  0⎥        ⎢1/24 1/12   1/6 ⎥        ⎢0  1  1  4  4  0⎥
//!      ⎢0  2 −1 −2  1  0⎥        ⎢1/24 −1/12  1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//!      ⎣0  4  0 −5  0  1⎦        ⎣  0     0     1 ⎦
//! ```
//!
//! The sum over channels of the 36 elementwise products is 36 independent matrix products — for
//! each position `e` of the 6×6 domain, `M_e (C_out × tiles) = U_e (C_out × C_in) · V_e (C_in × tiles)` —
//! which do `36·C_in·C_out` multiply-adds per 16 output pixels instead of im2col's
//! `144·C_in·C_out`: 4× fewer. The price is precision: the transforms' larger coefficients
//! amplify f32 rounding more than im2col's plain sums: against the f64 direct convolution the
//! largest error stays below 7e-6 of the output's largest magnitude on the tests' shapes (they
//! bound it at 3e-5), and the end-to-end gradient still matches PyTorch's at the unchanged
//! bounds.
//!
//! Work is cut into bands of tile rows (fixed by the shape), one rayon task each; within a band
//! the input transform runs in parallel over groups of channels, the 36 GEMMs in parallel over
//! `e`, and the output transform in parallel over output channels, so even a one-band map keeps
//! every core busy. Every split depends on the shape alone, so results do not depend on the
//! thread count.

use super::{Activation, ConvGeometry, Source};
use crate::kernels::elementwise::MaskAt;
use crate::kernels::fresh::{self, Fresh};
use crate::kernels::gemm::{gemm, MatMut, MatRef};
use crate::kernels::isa::Isa;
use crate::kernels::prefetch;
use crate::kernels::scratch;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Output tile side, `m`.
const M: usize = 4;
/// Input tile side, `m + r − 1` for the 3×3 filter.
const T: usize = 6;
/// Positions in the Winograd domain, `T²`: one GEMM each.
const E: usize = T * T;
/// Tiles per band the banding aims for (a band is whole tile rows, so at least one): enough for
/// the GEMMs to amortise packing the filters, few enough that a band's transformed input and
/// products (36 × channels × tiles floats each) stay near the cores. Measured on VGG16 (whole
/// evaluations, `nst bench`, AMD EPYC Zen 5, BENCHMARKS.md): 128 → 64 took 512×384 from 271 to
/// 259 ms, 500×375 from 278 to 260, 1024×768 from 1062 to 1031, 256×192 from 75.7 to 73.0; 48
/// was the same as 64, 32 slower (290 ms). (An earlier session, measuring conv1_2 alone before
/// the input rows were prefetched, had found 256 → 128 faster and 64 slower.)
const BAND_TARGET_TILES: usize = 64;
/// Tiles per vector of the `gemm` crate's AVX-512 kernel (16 f32): the unit in which it
/// computes a band's last, partial block of tiles.
const GEMM_TILE_VECTOR: usize = 16;
/// Input channels per task of the input transform.
const CHANNEL_GROUP: usize = 16;

/// Tiles transformed together: one AVX2 register of f32.
const LANES: usize = 8;

/// One value of [`LANES`] neighbouring tiles, added and scaled lane by lane: with the loops
/// inlined the compiler turns each operation into one vector instruction (8-wide under AVX2,
/// two 4-wide ones on the SSE2 baseline).
#[derive(Clone, Copy)]
struct Lanes([f32; LANES]);

impl Lanes {
    /// The first [`LANES`] values of `s`, zero-padded if `s` is shorter.
    #[inline(always)]
    fn load(s: &[f32]) -> Lanes {
        match s.first_chunk::<LANES>() {
            Some(full) => Lanes(*full),
            None => {
                let mut l = [0.0; LANES];
                l[..s.len()].copy_from_slice(s);
                Lanes(l)
            }
        }
    }

    /// Writes the first `min(LANES, d.len())` lanes into `d`.
    #[inline(always)]
    fn store(self, d: &mut [f32]) {
        match d.first_chunk_mut::<LANES>() {
            Some(full) => *full = self.0,
            None => {
                let k = d.len();
                d.copy_from_slice(&self.0[..k]);
            }
        }
    }

    /// `s[i..i + LANES]`, which must be in bounds: the hot loops' load, whose length the
    /// compiler knows (no partial path beside it, so nothing is kept in memory for one).
    #[inline(always)]
    fn at(s: &[f32], i: usize) -> Lanes {
        Lanes(s[i..i + LANES].try_into().expect("LANES values"))
    }

    /// Writes all lanes into `d[i..i + LANES]`, which must be in bounds (see [`Lanes::at`]).
    #[inline(always)]
    fn put(self, d: &mut [f32], i: usize) {
        d[i..i + LANES].copy_from_slice(&self.0);
    }
}

impl Lanes {
    /// `f` applied lane by lane.
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Lanes {
        let mut r = self.0;
        for a in r.iter_mut() {
            *a = f(*a);
        }
        Lanes(r)
    }

    /// `f` applied to each pair of lanes of `self` and `o`.
    #[inline(always)]
    fn zip(self, o: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
        let mut r = self.0;
        for (a, b) in r.iter_mut().zip(o.0) {
            *a = f(*a, b);
        }
        Lanes(r)
    }

    /// `max(v, 0)` lane by lane (NaN becomes 0, as in the separate ReLU).
    #[inline(always)]
    fn relu(self) -> Lanes {
        self.map(|a| a.max(0.0))
    }
}

impl std::ops::Add for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn add(self, o: Lanes) -> Lanes {
        self.zip(o, |a, b| a + b)
    }
}

impl std::ops::Sub for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn sub(self, o: Lanes) -> Lanes {
        self.zip(o, |a, b| a - b)
    }
}

impl std::ops::Mul<f32> for Lanes {
    type Output = Lanes;
    #[inline(always)]
    fn mul(self, k: f32) -> Lanes {
        self.map(|a| a * k)
    }
}

/// How a pass finishes each output value and stores it.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    /// Added to every value of output channel `o`: `bias[o]`.
    bias: Option<&'a [f32]>,
    /// Then `max(·, 0)`.
    relu: bool,
    /// And the ReLU's mask bits of the rows stored, from the band's first row of the plane on
    /// (forward passes into [`Dest::Rows`] only).
    mask: Option<MaskAt<'a>>,
    /// The planes rotated by 180°: the input's as they are read, the result's as it is stored
    /// (row `i` of a band's result into row `rows − 1 − i` of its `out`, each row's values
    /// reversed) — how [`input_gradient`] works on rotated planes without a pass of its own.
    reversed: bool,
    /// Added to what the output holds instead of overwriting it ([`input_gradient_from`]).
    accumulate: bool,
}

/// Where the output transform puts a band's rows of one output plane.
enum Dest<'a> {
    /// The rows themselves (`rows × W`; mirrored if the epilogue says `reversed`), and where the
    /// band's rows of the next output plane lie, if there is one.
    Rows(&'a mut [f32], Option<RowsAt>),
    /// Their 2×2, stride-2 max pooling (`⌊rows/2⌋ × ⌊W/2⌋`) and, for each pooled value, which
    /// input of its window won (`2·row + column`, the first of equals) — as `pool::max_pool2_forward`
    /// would give from the rows, without the rows ever being stored.
    Pooled(&'a mut [f32], &'a mut [u8]),
}

/// Where a band's rows of an output plane lie, as an address and a number of values: for
/// prefetching them only ([`prefetch::lines`]), never to read or write through, since another
/// task may be writing them.
#[derive(Clone, Copy)]
struct RowsAt {
    addr: usize,
    len: usize,
}

/// `Bᵀ·d` for one column (or row) `d` of a 6×6 input tile, for [`LANES`] tiles at once.
#[inline(always)]
fn input_1d(d: [Lanes; T]) -> [Lanes; T] {
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

/// `Aᵀ·m` for one column (or row) `m` of a 6×6 product tile, for [`LANES`] tiles at once.
#[inline(always)]
fn output_1d(m: [Lanes; T]) -> [Lanes; M] {
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
fn filter_position(e: usize, transposed: bool) -> usize {
    if transposed {
        (e % T) * T + e / T
    } else {
        e
    }
}

/// The tile rows per band, and the bands `[t0, t1)` of `tile_rows × tile_cols` tiles.
fn bands(tile_rows: usize, tile_cols: usize) -> (usize, Vec<(usize, usize)>) {
    let rows = rows_per_band(tile_rows, tile_cols);
    let list = (0..tile_rows)
        .step_by(rows)
        .map(|t0| (t0, (t0 + rows).min(tile_rows)))
        .collect();
    (rows, list)
}

/// The tile rows per band: of the counts that keep a band within twice [`BAND_TARGET_TILES`]
/// (or one row, if a row alone is more), the one whose bands leave the fewest of the GEMM
/// kernel's 16-tile vectors part-empty — a band's tiles are the products' contiguous dimension,
/// and a band of 72 tiles pays for 80 — and of those, the one nearest the target. At 512×384
/// every layer's rows make whole vectors at the target (128, 64, 32, 16, 8 tiles a row); in
/// portrait, 384×512, conv3's rows of 24 tiles made bands of 72 (now 48) and conv4's of 12
/// bands of 72 (now 48).
fn rows_per_band(tile_rows: usize, tile_cols: usize) -> usize {
    let most = (2 * BAND_TARGET_TILES / tile_cols).clamp(1, tile_rows.max(1));
    // Tiles computed in part-empty vectors over all bands, with `r` rows a band.
    let wasted = |r: usize| -> usize {
        (0..tile_rows)
            .step_by(r)
            .map(|t0| ((t0 + r).min(tile_rows) - t0) * tile_cols)
            .map(|n| n.next_multiple_of(GEMM_TILE_VECTOR) - n)
            .sum()
    };
    (1..=most)
        .min_by_key(|&r| (wasted(r), (r * tile_cols).abs_diff(BAND_TARGET_TILES)))
        .unwrap_or(1)
}

/// Independent tasks of the forward pass's GEMM stage for `g`, bands × 36, the stage that does
/// most of the work (the profile reports it). The input transform makes bands × ⌈C_in/16⌉
/// tasks — fewer than 36 per band below 576 input channels — and the output transform bands ×
/// C_out.
pub fn tasks(g: &ConvGeometry) -> usize {
    bands(g.h.div_ceil(M), g.w.div_ceil(M)).1.len() * E
}

/// `V_e[c][q] = (Bᵀ d B)_e` for channels `[c0, c1)` and the tiles `q` of tile rows `[t0, t1)`,
/// where `d` is the 6×6 input patch at rows `4·ty − 1 …`, columns `4·tx − 1 …` (zero outside).
/// `v[e]` holds rows `c0..c1` of `V_e` (`(c1 − c0) × n`, `n` the band's tile count). Compiled
/// for `isa`.
fn transform_input(isa: Isa, x: Source, g: &ConvGeometry, band: Band, v: &mut [&mut [f32]]) {
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

thread_local! {
    /// Each thread's working rows for the transforms, kept from call to call: a call per band
    /// and channel (group) allocating and freeing its own zeroed rows made the allocator ~2% of
    /// an evaluation. The transforms start no parallel work, so a call never finds them taken.
    static WORK: RefCell<[Vec<f32>; 4]> = RefCell::new(Default::default());
}

/// This thread's four working rows, of lengths `lens`, with **unspecified contents** (as
/// [`scratch::take`]'s): the transforms write every value before reading it, or zero it.
/// Returned with [`give_work`].
fn take_work(lens: [usize; 4]) -> [Vec<f32>; 4] {
    let mut work = WORK.with(|w| std::mem::take(&mut *w.borrow_mut()));
    for (v, len) in work.iter_mut().zip(lens) {
        v.resize(len, 0.0);
    }
    work
}

/// Gives [`take_work`]'s rows back to this thread.
fn give_work(work: [Vec<f32>; 4]) {
    WORK.with(|w| *w.borrow_mut() = work);
}

/// The work of one input-transform task: tile rows `[t0, t1)` of `tile_cols` tiles, channels
/// `[c0, c1)`.
#[derive(Clone, Copy)]
struct Band {
    t0: usize,
    t1: usize,
    tile_cols: usize,
    c0: usize,
    c1: usize,
    /// Read every input plane rotated by 180° (its values reversed), for [`input_gradient`].
    reversed: bool,
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

/// `Y = Aᵀ M A` (+ bias, then ReLU if asked: the `epilogue`) for output channel `o` over the
/// band's tiles, written into `out`, the band's rows of that channel's plane (`rows × W`, the
/// last band's possibly fewer than 4 per tile row; rotated by 180° if the epilogue says
/// `reversed`). `m` holds the band's products `[36][C_out][n]`. Compiled for `isa`.
fn transform_output(
    isa: Isa,
    m: &[f32],
    g: &ConvGeometry,
    o: usize,
    tc: usize,
    epilogue: Epilogue<'_>,
    dest: Dest<'_>,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `transform_input`, both levels mean the processor has AVX2 and FMA.
        Isa::Avx2Fma | Isa::Avx512F => unsafe {
            transform_output_avx2(m, g, o, tc, epilogue, dest)
        },
        _ => transform_output_body::<false>(m, g, o, tc, epilogue, dest),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transform_output_avx2(
    m: &[f32],
    g: &ConvGeometry,
    o: usize,
    tc: usize,
    epilogue: Epilogue<'_>,
    dest: Dest<'_>,
) {
    transform_output_body::<true>(m, g, o, tc, epilogue, dest)
}

/// See [`transform_output`]. As in the input transform, intermediate rows are kept split by
/// column phase (`s[i][c][t]` is column `4·t + c` of row `i`), so both passes run over
/// [`LANES`] consecutive tiles at a time; only the final store interleaves the phases into the
/// output row. `AVX2` as in [`transform_input_body`].
#[inline(always)]
fn transform_output_body<const AVX2: bool>(
    m: &[f32],
    g: &ConvGeometry,
    o: usize,
    tc: usize,
    epilogue: Epilogue<'_>,
    mut dest: Dest<'_>,
) {
    let (c_out, w) = (g.c_out, g.w);
    let n = m.len() / (E * c_out);
    let sl = tc.div_ceil(LANES) * LANES;
    let len = M * sl;
    let me: [&[f32]; E] = std::array::from_fn(|e| &m[(e * c_out + o) * n..(e * c_out + o + 1) * n]);
    let bias = Lanes([epilogue.bias.map_or(0.0, |b| b[o]); LANES]);
    // The build the mask's comparisons run in: this one's.
    let isa = if AVX2 { Isa::Avx2Fma } else { Isa::Baseline };
    // The rows after `·A` and after `Aᵀ·`, and one result row, interleaved there before it is
    // stored reversed or added.
    let direct = !(epilogue.reversed || epilogue.accumulate);
    let mut work = take_work([T * len, M * len, if direct { 0 } else { w }, 0]);
    let [s, y, line, _] = &mut work;
    for r in 0..n / tc {
        let q0 = r * tc;
        // M·A along each tile's rows: s[i][c][t].
        for i in 0..T {
            let src: [&[f32]; T] = std::array::from_fn(|k| &me[i * T + k][q0..q0 + tc]);
            for t in (0..tc).step_by(LANES) {
                let t = block_start(t, tc);
                let d: [Lanes; T] = if t + LANES <= tc {
                    std::array::from_fn(|k| Lanes::at(src[k], t))
                } else {
                    std::array::from_fn(|k| Lanes::load(&src[k][t..]))
                };
                for (c, val) in output_1d(d).into_iter().enumerate() {
                    val.put(s, (i * M + c) * sl + t);
                }
            }
        }
        // Aᵀ· down the columns, over every phase and tile, plus the bias: y[rr][c][t].
        for j in (0..len).step_by(LANES) {
            let d: [Lanes; T] = std::array::from_fn(|i| Lanes::at(s, i * len + j));
            for (rr, val) in output_1d(d).into_iter().enumerate() {
                let out = val + bias;
                let out = if epilogue.relu { out.relu() } else { out };
                out.put(y, rr * len + j);
            }
        }
        let (out, next_plane) = match &mut dest {
            Dest::Rows(out, next_plane) => (out, *next_plane),
            Dest::Pooled(pooled, argmax) => {
                store_pooled(y, sl, tc, w / 2, r, pooled, argmax);
                continue;
            }
        };
        // The band's result rows; a reversed band's `out` holds them last to first.
        let rows = out.len() / w;
        if epilogue.accumulate {
            // The gradient added into was written long before (50 MB at relu1_1, evicted
            // from every cache): ask for the next tile row's rows while this one is stored —
            // after the band's last, for the next plane's first, which comes next (conv1_2's
            // bands are one tile row).
            let at = RowsAt {
                addr: out.as_ptr() as usize,
                len: out.len(),
            };
            match next_plane {
                Some(next) if M * (r + 1) >= rows => prefetch_rows(next, w, 0, epilogue.reversed),
                _ => prefetch_rows(at, w, M * (r + 1), epilogue.reversed),
            }
        }
        // Interleave the phases into the output rows: row[4·t + c] = y[rr][c][t].
        for rr in 0..M.min(rows - M * r) {
            let i = M * r + rr;
            let at = if epilogue.reversed { rows - 1 - i } else { i };
            let row = &mut out[at * w..(at + 1) * w];
            let phases = &y[rr * len..(rr + 1) * len];
            if direct {
                interleave_phases::<AVX2>(phases, row);
                if let Some(mask) = epilogue.mask {
                    mask.set(isa, row, i * w);
                }
                continue;
            }
            interleave_phases::<AVX2>(phases, line);
            match (epilogue.reversed, epilogue.accumulate) {
                (true, true) => row
                    .iter_mut()
                    .zip(line.iter().rev())
                    .for_each(|(d, s)| *d += s),
                (true, false) => row
                    .iter_mut()
                    .zip(line.iter().rev())
                    .for_each(|(d, s)| *d = *s),
                _ => row.iter_mut().zip(line.iter()).for_each(|(d, s)| *d += s),
            }
        }
    }
    give_work(work);
}

/// Where the block of [`LANES`] tiles at `t` of a row of `tc` starts: at `t`, except that a
/// row's last, partial block is done whole, overlapping the block before it (the same values
/// again), so that its loads and stores are not variable-length copies (calls to `memcpy`). A
/// row shorter than a block keeps its one partial block.
#[inline(always)]
fn block_start(t: usize, tc: usize) -> usize {
    if t + LANES > tc && tc >= LANES {
        tc - LANES
    } else {
        t
    }
}

/// Prefetches result rows `first .. first + 4` of a band's rows `out` (rows of `w` values;
/// mirrored if `reversed`) into the cache; rows past the band are skipped.
#[inline(always)]
fn prefetch_rows(out: RowsAt, w: usize, first: usize, reversed: bool) {
    let rows = out.len / w;
    for i in first..(first + M).min(rows) {
        let at = if reversed { rows - 1 - i } else { i };
        prefetch::lines(out.addr + at * w * size_of::<f32>(), w * size_of::<f32>());
    }
}

/// [`Dest::Pooled`]'s store for tile row `r` of a band: the 2×2 max pooling of its four result
/// rows `y[rr][c][t]` (column `4·t + c`; `sl` tiles per phase) into pooled rows `2·r` and
/// `2·r + 1` of `pooled` (`pw` values each; only those the band has) and their winners into
/// `argmax`. Pooled column `2·t + p` takes columns `4·t + 2·p` and `4·t + 2·p + 1`: phases `2·p`
/// and `2·p + 1`, so each window's four values are four phase vectors, compared lane by lane in
/// the window's row-major order with a strict `>` (the first of equals wins, as in
/// `pool::max_pool2_forward`).
#[inline(always)]
fn store_pooled(
    y: &[f32],
    sl: usize,
    tc: usize,
    pw: usize,
    r: usize,
    pooled: &mut [f32],
    argmax: &mut [u8],
) {
    let len = M * sl;
    let pooled_rows = pooled.len().checked_div(pw).unwrap_or(0);
    for pr in 0..2 {
        let row = 2 * r + pr;
        if row >= pooled_rows {
            break;
        }
        let (dst, arg) = (
            &mut pooled[row * pw..(row + 1) * pw],
            &mut argmax[row * pw..(row + 1) * pw],
        );
        for t in (0..tc).step_by(LANES) {
            let mut vals = [0.0f32; 2 * LANES];
            let mut wins = [0u8; 2 * LANES];
            for p in 0..2 {
                let at =
                    |rr: usize, c: usize| Lanes::at(y, (2 * pr + rr) * len + (2 * p + c) * sl + t);
                let mut best = at(0, 0);
                let mut k = Lanes([0.0; LANES]);
                for (v, idx) in [(at(0, 1), 1.0), (at(1, 0), 2.0), (at(1, 1), 3.0)] {
                    for l in 0..LANES {
                        let wins = v.0[l] > best.0[l];
                        best.0[l] = if wins { v.0[l] } else { best.0[l] };
                        k.0[l] = if wins { idx } else { k.0[l] };
                    }
                }
                for l in 0..LANES {
                    vals[2 * l + p] = best.0[l];
                    wins[2 * l + p] = k.0[l] as u8;
                }
            }
            let j = 2 * t;
            if j >= pw {
                break;
            }
            let n = (2 * LANES).min(pw - j);
            dst[j..j + n].copy_from_slice(&vals[..n]);
            arg[j..j + n].copy_from_slice(&wins[..n]);
        }
    }
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

/// The inverse of [`split_phases`] into an output row: `row[4·t + c] = phases[c·n + t]`, for
/// the `row.len()` values the row has (`phases` holds `4·n` values, `n` a multiple of
/// [`LANES`], `4·n ≥ row.len()`). With `AVX2`, whole groups of 8 tiles are transposed in
/// registers, the rest moved one by one.
#[inline(always)]
fn interleave_phases<const AVX2: bool>(phases: &[f32], row: &mut [f32]) {
    let n = phases.len() / M;
    assert!(
        M * n >= row.len() && n.is_multiple_of(LANES),
        "interleave_phases: lengths"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: as in `split_phases`.
        done = unsafe { interleave_phases_avx2(phases, row) };
    }
    for (t, px) in row.chunks_mut(M).enumerate().skip(done) {
        for (c, d) in px.iter_mut().enumerate() {
            *d = phases[c * n + t];
        }
    }
}

/// [`interleave_phases`] with AVX2 shuffles for every full group of 8 tiles (32 values of the
/// row); returns the tiles done. The steps of [`split_phases_avx2`] in reverse: 4×4 transposes
/// within each 128-bit half give tiles (t, t+4), (t+1, t+5), (t+2, t+6), (t+3, t+7), and the
/// halves are regrouped into four runs of eight values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn interleave_phases_avx2(phases: &[f32], row: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = phases.len() / M;
    let full = row.len() / (M * LANES) * LANES;
    for t in (0..full).step_by(LANES) {
        let dst = &mut row[M * t..M * (t + LANES)];
        // SAFETY: each load reads 8 values at `c·n + t`, `t + 8 ≤ n`, inside `phases`; `dst`
        // holds the 32 values stored.
        unsafe {
            let p0 = _mm256_loadu_ps(phases.as_ptr().add(t));
            let p1 = _mm256_loadu_ps(phases.as_ptr().add(n + t));
            let p2 = _mm256_loadu_ps(phases.as_ptr().add(2 * n + t));
            let p3 = _mm256_loadu_ps(phases.as_ptr().add(3 * n + t));
            let (a, b) = (_mm256_unpacklo_ps(p0, p1), _mm256_unpacklo_ps(p2, p3));
            let (c, d) = (_mm256_unpackhi_ps(p0, p1), _mm256_unpackhi_ps(p2, p3));
            let e0 = _mm256_shuffle_ps::<0x44>(a, b);
            let e1 = _mm256_shuffle_ps::<0xEE>(a, b);
            let e2 = _mm256_shuffle_ps::<0x44>(c, d);
            let e3 = _mm256_shuffle_ps::<0xEE>(c, d);
            let out = dst.as_mut_ptr();
            _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(e0, e1));
            _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x20>(e2, e3));
            _mm256_storeu_ps(out.add(16), _mm256_permute2f128_ps::<0x31>(e0, e1));
            _mm256_storeu_ps(out.add(24), _mm256_permute2f128_ps::<0x31>(e2, e3));
        }
    }
    full
}

/// Cuts `data` into `part`-long pieces, each piece into `chunk`-long chunks, and groups the
/// chunks by their index within the piece: group `k` holds chunk `k` of every piece, in order.
/// The groups are disjoint, so each can be handed to its own parallel task — a band's rows of
/// every output plane, or a channel group's rows of every `V_e`. With `from_end`, each piece
/// is cut from its end (chunk `k` is the k-th from the end, the short one first): a band's
/// rows of every plane rotated by 180°.
fn group_chunks<T>(
    data: &mut [T],
    part: usize,
    chunk: usize,
    from_end: bool,
) -> Vec<Vec<&mut [T]>> {
    let mut groups: Vec<Vec<&mut [T]>> = (0..part.div_ceil(chunk)).map(|_| Vec::new()).collect();
    for piece in data.chunks_mut(part) {
        if from_end {
            for (k, c) in piece.rchunks_mut(chunk).enumerate() {
                groups[k].push(c);
            }
        } else {
            for (k, c) in piece.chunks_mut(chunk).enumerate() {
                groups[k].push(c);
            }
        }
    }
    groups
}

/// 3×3, padding-1 convolution of one image by F(4×4, 3×3): `x: C_in×H×W`, `u` from
/// [`transform_filters`], optional `bias: C_out`; returns `C_out×H×W`, finished as `act` says.
/// The transforms run with the best instruction set the processor has ([`Isa::detect`]).
#[track_caller]
pub fn forward(
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    g: &ConvGeometry,
) -> Vec<f32> {
    forward_with(Isa::detect(), x, u, bias, act, g)
}

/// [`forward`] with the transforms compiled for `isa` (which the processor must support: take
/// it from [`Isa::available`]). Every level does the same operations in the same order, so all
/// give the same bits (tested).
#[track_caller]
pub fn forward_with(
    isa: Isa,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    g: &ConvGeometry,
) -> Vec<f32> {
    let mut y = Fresh::new(g.c_out * g.h * g.w);
    let epilogue = Epilogue {
        bias,
        relu: act.relu(),
        mask: act.mask(),
        reversed: false,
        accumulate: false,
    };
    let (x, u) = (Source::Planes(x), DomainFilters::Forward(u));
    convolve(isa, x, u, g, epilogue, Output::Fresh(y.parts()), None);
    // SAFETY: `convolve` zeroes every part of a fresh output before writing it.
    unsafe { y.into_written() }
}

/// `maxpool2(max(forward(x) + bias, 0))`: the fused convolution and ReLU of [`forward`], pooled
/// 2×2 with stride 2 by the output transform itself, so the map at full resolution is never
/// stored (at conv1_2, 50 MB written and read again at 512×384). Returns the pooled planes
/// (`C_out×⌊H/2⌋×⌊W/2⌋`) and each value's window winner, the same values and winners as
/// `pool::max_pool2_forward` on [`forward`]'s result (tested); both empty if the map is smaller
/// than a window.
#[track_caller]
pub fn forward_relu_max_pool(
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> (Vec<f32>, Vec<u8>) {
    forward_relu_max_pool_with(Isa::detect(), x, u, bias, g)
}

/// [`forward_relu_max_pool`] with the transforms compiled for `isa` (see [`forward_with`]).
#[track_caller]
pub fn forward_relu_max_pool_with(
    isa: Isa,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> (Vec<f32>, Vec<u8>) {
    let len = g.c_out * (g.h / 2) * (g.w / 2);
    let (mut pooled, mut argmax) = (Fresh::new(len), vec![0u8; len]);
    if len > 0 {
        let epilogue = Epilogue {
            bias,
            relu: true,
            mask: None,
            reversed: false,
            accumulate: false,
        };
        let u = DomainFilters::Forward(u);
        let x = Source::Planes(x);
        let out = Output::Fresh(pooled.parts());
        convolve(isa, x, u, g, epilogue, out, Some(&mut argmax));
    }
    // SAFETY: `convolve` zeroes every part of a fresh output before writing it (and with
    // `len` = 0 there is nothing to initialise).
    (unsafe { pooled.into_written() }, argmax)
}

/// The input gradient of [`forward`] for the geometry `g` of that forward pass: `dx: C_in×H×W`
/// for `dy: C_out×H×W` (given as a [`Source`]: the planes, or a fused pooling's or ReLU's
/// gradient), from
/// the *forward* pass's Winograd filters `u`, so no second, flipped set of filters is prepared
/// or kept (for VGG16 that set is as large as the first, 160 MB).
///
/// The input gradient of a 3×3 "same" correlation is the correlation of `dy` with the filters
/// rotated by 180° and transposed (`C_in` and `C_out` swapped). Rotating the data instead of
/// the filters gives the same result — for an `H×W` plane, `rot(dy ⋆ rot(g)) = rot(dy) ⋆ g`
/// (substitute `i → H−1−i` in the sum) — and a rotation by 180° of a row-major plane is the
/// reversal of its values. So `dx = rev(rev(dy) ⋆ gᵀ)`: the forward algorithm on the reversed
/// planes, with each position's `U_e` read transposed (a change of strides, not a copy).
#[track_caller]
pub fn input_gradient(dy: Source, u: &[f32], g: &ConvGeometry) -> Vec<f32> {
    input_gradient_with(Isa::detect(), dy, u, g)
}

/// [`input_gradient`] with the transforms compiled for `isa` (see [`forward_with`]).
#[track_caller]
pub fn input_gradient_with(isa: Isa, dy: Source, u: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let mut dx = Fresh::new(g.c_in * g.h * g.w);
    input_gradient_into(isa, dy, u, g, Output::Fresh(dx.parts()), false);
    // SAFETY: `convolve` zeroes every part of a fresh output before writing it.
    unsafe { dx.into_written() }
}

/// [`input_gradient`] stored into `dx` (`C_in×H×W`) — or added to it if `accumulate`, as each
/// value is stored: how a map read by two operations (a style layer's, by the next convolution
/// and by its Gram matrix) gets the convolution's share of its gradient without a second buffer
/// and a pass to add it. The same bits as storing, or adding, [`input_gradient`]'s result.
#[track_caller]
pub fn input_gradient_from(
    dy: Source,
    u: &[f32],
    g: &ConvGeometry,
    dx: &mut [f32],
    accumulate: bool,
) {
    input_gradient_from_with(Isa::detect(), dy, u, g, dx, accumulate)
}

/// [`input_gradient_from`] with the transforms compiled for `isa` (see [`forward_with`]). The
/// input transform reads `dy`'s planes reversed as it loads their rows (no copy of `dy`), and
/// the output transform stores the result's planes reversed.
#[track_caller]
pub fn input_gradient_from_with(
    isa: Isa,
    dy: Source,
    u: &[f32],
    g: &ConvGeometry,
    dx: &mut [f32],
    accumulate: bool,
) {
    input_gradient_into(isa, dy, u, g, Output::Values(dx), accumulate);
}

/// [`input_gradient_from_with`] into either kind of [`Output`].
#[track_caller]
fn input_gradient_into(
    isa: Isa,
    dy: Source,
    u: &[f32],
    g: &ConvGeometry,
    dx: Output,
    accumulate: bool,
) {
    assert!(
        dy.fits(g.c_out, g.h, g.w),
        "winograd: the output gradient does not fit the geometry"
    );
    let epilogue = Epilogue {
        bias: None,
        relu: false,
        mask: None,
        reversed: true,
        accumulate,
    };
    let u = DomainFilters::Transposed(u);
    convolve(isa, dy, u, &g.flipped(), epilogue, dx, None);
}

/// Where [`convolve`] stores its result.
enum Output<'a> {
    /// Values already there: overwritten, or added to if the epilogue says `accumulate`.
    Values(&'a mut [f32]),
    /// A [`Fresh`] buffer's values: each band zeroes its rows of a plane right before the
    /// output transform writes them.
    Fresh(&'a mut [MaybeUninit<f32>]),
}

/// A band's rows of one plane of an [`Output`], as values to write: zeroed first if `fresh`.
///
/// # Safety
/// Unless `fresh`, every value of `part` must be initialised (an [`Output::Values`] part).
unsafe fn band_values(part: &mut [MaybeUninit<f32>], fresh: bool) -> &mut [f32] {
    if fresh {
        return fresh::zero(part);
    }
    // SAFETY: the caller's promise: every value is initialised; the layouts are the same.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// The Winograd-domain filters a pass multiplies by.
#[derive(Clone, Copy)]
enum DomainFilters<'a> {
    /// `U` as [`transform_filters`] stores it for this pass's geometry: `[36][C_out][C_in]`.
    Forward(&'a [f32]),
    /// The `U` of the convolution with `C_in` and `C_out` swapped, `[36][C_in][C_out]`, each
    /// position's matrix read transposed ([`input_gradient`]).
    Transposed(&'a [f32]),
}

/// The F(4×4, 3×3) convolution of geometry `g` with the filters `u` of `x`, finished and stored
/// into `y` (`C_out×H×W`) as `epilogue` says: [`forward`]'s work, and [`input_gradient`]'s.
/// With `argmax`, `y` receives the 2×2 max pooling of that instead (`C_out×⌊H/2⌋×⌊W/2⌋`, which
/// must not be empty) and `argmax` its winners ([`forward_relu_max_pool`]).
#[track_caller]
fn convolve(
    isa: Isa,
    x: Source,
    u: DomainFilters,
    g: &ConvGeometry,
    epilogue: Epilogue<'_>,
    y: Output,
    argmax: Option<&mut [u8]>,
) {
    isa.assert_available("winograd");
    let (y, fresh) = match y {
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and nothing but initialised values
        // is ever written through this view (each part goes back through `band_values`).
        Output::Values(v) => {
            let view = unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) };
            (view, false)
        }
        Output::Fresh(parts) => (parts, true),
    };
    assert!(
        !(fresh && epilogue.accumulate),
        "winograd: a fresh output has nothing to add to"
    );
    assert!(
        g.is_3x3_same(),
        "winograd: needs a 3×3 kernel with padding 1"
    );
    let (DomainFilters::Forward(u_all) | DomainFilters::Transposed(u_all)) = u;
    assert_eq!(
        u_all.len(),
        E * g.c_out * g.c_in,
        "winograd: transformed filters have the wrong size"
    );
    let (tile_rows, tile_cols) = (g.h.div_ceil(M), g.w.div_ceil(M));
    let (rows_per_band, band_list) = bands(tile_rows, tile_cols);
    // A stored plane and a band's rows of it: the map's, or its pooling's (half as many rows
    // of half the width; bands start on even rows, so no window straddles two).
    let (plane_len, band_len) = match argmax {
        None => (g.h * g.w, M * rows_per_band * g.w),
        Some(_) => ((g.h / 2) * (g.w / 2), M / 2 * rows_per_band * (g.w / 2)),
    };
    assert!(plane_len > 0, "winograd: nothing to store");
    assert_eq!(
        y.len(),
        g.c_out * plane_len,
        "winograd: the output has the wrong size"
    );
    if let Some(b) = epilogue.bias {
        assert_eq!(b.len(), g.c_out, "winograd: one bias per output channel");
    }
    let reversed = epilogue.reversed;
    assert!(
        argmax.is_none() || !(reversed || epilogue.accumulate),
        "winograd: pooling is for the forward pass"
    );
    assert!(
        epilogue.mask.is_none() || !(reversed || epilogue.accumulate || argmax.is_some()),
        "winograd: a ReLU mask is for a forward pass storing its map"
    );
    // Each band's rows of every output plane, so that bands write their outputs directly.
    let outs = group_chunks(y, plane_len, band_len, reversed);
    let args: Vec<Vec<&mut [u8]>> = match argmax {
        Some(a) => {
            assert_eq!(
                a.len(),
                g.c_out * plane_len,
                "winograd: argmax has the wrong size"
            );
            group_chunks(a, plane_len, band_len, false)
        }
        None => (0..outs.len()).map(|_| Vec::new()).collect(),
    };
    // With pooling, a last band whose rows all fall on a dropped odd last row has no group, and
    // is skipped: nothing of it would be stored.
    band_list
        .into_par_iter()
        .zip(outs)
        .zip(args)
        .for_each(|(((t0, t1), mut out), mut arg)| {
            let n = (t1 - t0) * tile_cols;
            // V: [36][C_in][n]. Each channel group's input-transform task gets its rows of all
            // 36 matrices, so the GEMMs below see one contiguous C_in × n operand each.
            // Every element of V and M is written before it is read (transform, then GEMM with
            // beta = 0), so reused buffers need no zeroing.
            let mut v = scratch::take(E * g.c_in * n);
            group_chunks(&mut v, g.c_in * n, CHANNEL_GROUP * n, false)
                .into_par_iter()
                .enumerate()
                .for_each(|(gi, mut vg)| {
                    let c0 = gi * CHANNEL_GROUP;
                    let band = Band {
                        t0,
                        t1,
                        tile_cols,
                        c0,
                        c1: (c0 + CHANNEL_GROUP).min(g.c_in),
                        reversed,
                    };
                    transform_input(isa, x, g, band, &mut vg);
                });
            let mut m = scratch::take(E * g.c_out * n);
            m.par_chunks_mut(g.c_out * n)
                .zip(v.par_chunks(g.c_in * n))
                .enumerate()
                .for_each(|(e, (me, ve))| {
                    // M_e (C_out × n) = U_e (C_out × C_in) · V_e (C_in × n).
                    let pe = filter_position(e, g.transposed);
                    let ue = &u_all[pe * g.c_out * g.c_in..(pe + 1) * g.c_out * g.c_in];
                    let ue = match u {
                        DomainFilters::Forward(_) => MatRef::row_major(ue, g.c_out, g.c_in),
                        DomainFilters::Transposed(_) => MatRef::row_major(ue, g.c_in, g.c_out).t(),
                    };
                    gemm(
                        1.0,
                        ue,
                        MatRef::row_major(ve, g.c_in, n),
                        0.0,
                        MatMut::row_major(me, g.c_out, n),
                    );
                });
            scratch::give(v);
            if arg.is_empty() {
                let at: Vec<RowsAt> = out
                    .iter()
                    .map(|rows| RowsAt {
                        addr: rows.as_ptr() as usize,
                        len: rows.len(),
                    })
                    .collect();
                out.par_iter_mut().enumerate().for_each(|(o, plane_rows)| {
                    // SAFETY: a part of `Output::Values` is initialised; a fresh one is zeroed.
                    let rows = unsafe { band_values(plane_rows, fresh) };
                    let dest = Dest::Rows(rows, at.get(o + 1).copied());
                    // The mask of this plane's rows from the band's first on.
                    let first = (o * g.h + M * t0) * g.w;
                    let epilogue = Epilogue {
                        mask: epilogue.mask.map(|m| m.shifted(first)),
                        ..epilogue
                    };
                    transform_output(isa, &m, g, o, tile_cols, epilogue, dest);
                });
            } else {
                out.par_iter_mut()
                    .zip(arg.par_iter_mut())
                    .enumerate()
                    .for_each(|(o, (pooled, winners))| {
                        // SAFETY: as above.
                        let pooled = unsafe { band_values(pooled, fresh) };
                        let dest = Dest::Pooled(pooled, winners);
                        transform_output(isa, &m, g, o, tile_cols, epilogue, dest);
                    });
            }
            scratch::give(m);
        });
}
