//! **Direct** 3×3 convolution (padding 1) for layers with very few channels on one side: VGG's
//! conv1_1 (3 input channels) and the convolution that computes its input gradient (3 output
//! channels, see [`super::input_grad_algorithm`]).
//!
//! There the GEMM-based algorithms have one thin dimension: im2col's product has an inner
//! dimension of 27, and the flipped convolution's has 3 output rows — shapes a packed GEMM runs
//! at a small fraction of its speed, after copying the image 9 times into `col`. Here each
//! output is summed straight from the definition
//! `y[o, i, j] = b[o] + Σ_{c,u,v} w[o,c,u,v] · x[c, i+u−1, j+v−1]`, with a register tile of
//! 4 output channels × 16 pixels of a row: per tap, 2 vector loads of the input row and 4
//! broadcast weights feed 8 fused multiply-adds, in 11 of AVX2's 16 registers. (A 4 × 24 tile
//! needs all 16: the compiler then kept the accumulators on the stack, storing one after every
//! multiply-add, and conv1_1's forward pass took 7.2 ms instead of 5.4 — BENCHMARKS.md.)
//!
//! Work is split into groups of 4 output channels × bands of 8 output rows (a function of the
//! shape alone, so results do not depend on the thread count). A task goes through the input
//! channels 4 at a time: it copies their rows under the band (plus one above and below) into a
//! small zero-padded window — so the tile needs no bounds tests, and reads 12 short rows that
//! stay in cache instead of one row of every channel (whose planes, a multiple of 4 KB apart,
//! would all compete for the same cache sets) — and adds their taps into the band's outputs.
//! Bias and ReLU come last.
//!
//! The tile exists three times, chosen at run time (see [`Isa`]): AVX2 + FMA intrinsics, plain
//! loops for the baseline instruction set, and, where the processor has AVX-512F, tiles of
//! 512-bit registers — 4 × 64 pixels for a row's first multiples of 64, then 4 × 32 (the AVX2
//! tiles finish the row). The two FMA builds add the same taps in the same order and give the
//! same bits (tested); with 16 lanes conv1_1's forward pass takes 4.2 instead of 5.4 ms on a
//! Zen 5. The first window of input channels starts its sums at zero rather than reading the
//! zeroed output back (conv1_1's three channels are one window, so its forward pass never reads
//! its output).

use super::{Activation, ConvGeometry, Source};
use crate::kernels::fresh::{self, Fresh};
use crate::kernels::isa::Isa;
use crate::kernels::scratch;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Lanes of one vector register of f32 (AVX2).
const LANES: usize = 8;
/// Lanes of one AVX-512 register of f32.
const LANES_512: usize = 16;
/// Output channels per register tile (and per task).
const TILE_CHANNELS: usize = 4;
/// Vectors of [`LANES`] pixels per register tile.
const TILE_VECS: usize = 2;
/// Vectors of [`LANES_512`] pixels per AVX-512 register tile: 4 (64 pixels) for each row's
/// first multiples of 64, where per tap 4 input loads and 4 broadcast weights feed 16 fused
/// multiply-adds (with 2 vectors, 2 loads and 4 broadcasts fed 8); then [`TILE_VECS`].
const TILE_VECS_512: usize = 4;
/// Output rows per task.
const BAND_ROWS: usize = 8;

/// Input channels per window (one pass of a task over its outputs).
const WINDOW_CHANNELS: usize = 4;

/// A few input channels' rows under one band of output rows, zero-padded: window row `r` of
/// channel `c` (both relative) holds input row `y0 + r − 1` at columns `1..=W` and zeros around
/// it, and starts at `data[c·plane + r·row]`.
struct Window {
    data: scratch::Buffer,
    row: usize,
    plane: usize,
}

impl Window {
    /// The window of channels `channels` for output rows `y0..y0 + rows` of `x` (geometry `g`;
    /// rows made by [`Source::read_row`] with the `isa` build), in a buffer from this thread's
    /// scratch pool (see [`Window::give_back`]).
    fn new(
        isa: Isa,
        x: Source,
        g: &ConvGeometry,
        channels: std::ops::Range<usize>,
        y0: usize,
        rows: usize,
    ) -> Window {
        // Zeros on both sides, and on the right up to a whole 8-pixel tile past the last one:
        // the tile that finishes a row reads them into lanes it then discards (zeros, not
        // stale values, so that those lanes compute on ordinary numbers).
        let row = g.w.next_multiple_of(LANES) + 2;
        let plane = (rows + 2) * row;
        let mut data = scratch::take(channels.len() * plane);
        for (dst, c) in data.chunks_exact_mut(plane).zip(channels) {
            for (r, dst_row) in dst.chunks_exact_mut(row).enumerate() {
                // Input row y0 + r − 1, or zeros above and below the image.
                match (y0 + r).checked_sub(1).filter(|&iy| iy < g.h) {
                    Some(iy) => {
                        dst_row[0] = 0.0;
                        x.read_row(isa, (g.h, g.w), c, iy, &mut dst_row[1..=g.w]);
                        dst_row[g.w + 1..].fill(0.0);
                    }
                    None => dst_row.fill(0.0),
                }
            }
        }
        Window { data, row, plane }
    }

    /// Window row `r` of channel `c` (relative to the window).
    fn row(&self, c: usize, r: usize) -> &[f32] {
        &self.data[c * self.plane + r * self.row..][..self.row]
    }

    /// Returns the buffer to this thread's scratch pool.
    fn give_back(self) {
        scratch::give(self.data);
    }
}

/// Independent tasks of the forward pass: groups of 4 output channels × bands of 8 rows.
pub fn tasks(g: &ConvGeometry) -> usize {
    g.c_out.div_ceil(TILE_CHANNELS) * g.out_h().div_ceil(BAND_ROWS)
}

/// Forward convolution of one image (`x: C_in×H×W`, filters `w: C_out×C_in×3×3`, optional
/// `bias`), finished as `act` says, with the best instruction set the processor has. `x` is
/// read a row at a time, so it may be given unpooled or masked ([`Source`]): the input
/// gradient of conv1_1 reads relu1_1's gradient through the ReLU's mask that way.
pub fn forward(
    x: Source,
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    g: &ConvGeometry,
) -> Vec<f32> {
    forward_with(Isa::detect(), x, w, bias, act, g)
}

/// [`forward`] compiled for `isa`, which the processor must support ([`Isa::available`]; tests
/// run every level the processor has).
pub fn forward_with(
    isa: Isa,
    x: Source,
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    g: &ConvGeometry,
) -> Vec<f32> {
    isa.assert_available("direct convolution");
    assert!(
        g.is_3x3_same(),
        "direct convolution: 3×3 kernels with padding 1 only"
    );
    assert!(x.fits(g.c_in, g.h, g.w), "direct convolution: input size");
    assert_eq!(w.len(), g.c_out * g.k(), "direct convolution: filter size");
    let (h, wd) = (g.h, g.w);
    let mut y = Fresh::new(g.c_out * h * wd);
    // One task per (channel group, band): the band's rows of each of the group's planes.
    let mut tasks: Vec<(usize, usize, Vec<BandRows>)> = Vec::new();
    for (group, planes) in y.parts().chunks_mut(TILE_CHANNELS * h * wd).enumerate() {
        let first = tasks.len();
        for plane in planes.chunks_mut(h * wd) {
            for (band, rows) in plane.chunks_mut(BAND_ROWS * wd).enumerate() {
                if first + band == tasks.len() {
                    tasks.push((group * TILE_CHANNELS, band * BAND_ROWS, Vec::new()));
                }
                tasks[first + band].2.push(rows);
            }
        }
    }
    let job = Job { x, g, w, bias, act };
    tasks.into_par_iter().for_each(|(o0, y0, parts)| {
        let mut out: Vec<&mut [f32]> = parts.into_iter().map(fresh::zero).collect();
        job.band(isa, o0, y0, &mut out)
    });
    // SAFETY: the tasks' parts cover every value (each plane's bands, every plane of every
    // group), and each task zeroed its parts before anything else.
    unsafe { y.into_written() }
}

/// One plane's rows of a task's band, not yet initialised (see [`fresh`]).
type BandRows<'a> = &'a mut [MaybeUninit<f32>];

/// What every task of one forward pass shares.
#[derive(Clone, Copy)]
struct Job<'a> {
    x: Source<'a>,
    g: &'a ConvGeometry,
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    act: Activation<'a>,
}

impl Job<'_> {
    /// Output rows from `y0` on (as many as `out[r]` holds) of channels `o0..o0 + out.len()`,
    /// compiled for `isa`.
    fn band(&self, isa: Isa, o0: usize, y0: usize, out: &mut [&mut [f32]]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `forward_with` checked that the processor runs `isa` (`assert_available`):
            // AVX2 and FMA, and with `Isa::Avx512F` also AVX-512F.
            Isa::Avx512F => unsafe { self.band_avx512(o0, y0, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { self.band_avx2(o0, y0, out) },
            _ => self.band_channels::<false, false>(o0, y0, out),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn band_avx2(&self, o0: usize, y0: usize, out: &mut [&mut [f32]]) {
        self.band_channels::<true, false>(o0, y0, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f")]
    fn band_avx512(&self, o0: usize, y0: usize, out: &mut [&mut [f32]]) {
        self.band_channels::<true, true>(o0, y0, out)
    }

    /// [`Job::band`] for the group's channel count (4, or fewer in the last group). `AVX2` and
    /// `AVX512` say which instruction sets the caller runs with.
    #[inline(always)]
    fn band_channels<const AVX2: bool, const AVX512: bool>(
        &self,
        o0: usize,
        y0: usize,
        out: &mut [&mut [f32]],
    ) {
        match out.len() {
            4 => self.band_body::<4, AVX2, AVX512>(o0, y0, out),
            3 => self.band_body::<3, AVX2, AVX512>(o0, y0, out),
            2 => self.band_body::<2, AVX2, AVX512>(o0, y0, out),
            _ => self.band_body::<1, AVX2, AVX512>(o0, y0, out),
        }
    }

    /// The band, a window of input channels at a time: each row's 64- and 32-pixel tiles (with
    /// AVX-512F), 16-pixel tiles, then 8-pixel tiles, then the last pixels as one 8-pixel tile
    /// over the window's padding, each adding the window's taps to the sums so far; then bias
    /// and ReLU.
    #[inline(always)]
    fn band_body<const R: usize, const AVX2: bool, const AVX512: bool>(
        &self,
        o0: usize,
        y0: usize,
        out: &mut [&mut [f32]],
    ) {
        let wd = self.g.w;
        let rows = out[0].len() / wd;
        let (widest, wide512) = if AVX512 {
            let (long, short) = (TILE_VECS_512 * LANES_512, TILE_VECS * LANES_512);
            (wd / long * long, wd / short * short)
        } else {
            (0, 0)
        };
        let wide = wd / (TILE_VECS * LANES) * (TILE_VECS * LANES);
        let full = wd / LANES * LANES;
        // The build a masked row's copy runs in: this one's.
        let isa = if AVX2 { Isa::Avx2Fma } else { Isa::Baseline };
        for c0 in (0..self.g.c_in).step_by(WINDOW_CHANNELS) {
            let channels = c0..(c0 + WINDOW_CHANNELS).min(self.g.c_in);
            let first = c0 == 0;
            let win = Window::new(isa, self.x, self.g, channels.clone(), y0, rows);
            let taps = Taps::new(self.w, self.g.c_in, o0, R, channels);
            for dy in 0..rows {
                let at = |x: usize| dy * wd + x;
                #[cfg(target_arch = "x86_64")]
                for x in (0..widest).step_by(TILE_VECS_512 * LANES_512) {
                    // SAFETY: `widest` and `wide512` are only non-zero when `AVX512` is set, on
                    // the path `band_avx512` takes after the processor reported AVX-512F.
                    unsafe {
                        add_tile_avx512::<R, TILE_VECS_512>(&win, &taps, (dy, x, at(x)), first, out)
                    };
                }
                #[cfg(target_arch = "x86_64")]
                for x in (widest..wide512).step_by(TILE_VECS * LANES_512) {
                    // SAFETY: as above.
                    unsafe {
                        add_tile_avx512::<R, TILE_VECS>(&win, &taps, (dy, x, at(x)), first, out)
                    };
                }
                for x in (wide512..wide).step_by(TILE_VECS * LANES) {
                    add_tile::<R, TILE_VECS, AVX2>(&win, &taps, (dy, x, at(x)), first, out);
                }
                for x in (wide..full).step_by(LANES) {
                    add_tile::<R, 1, AVX2>(&win, &taps, (dy, x, at(x)), first, out);
                }
                if full < wd {
                    // The last pixels as one 8-pixel tile over the window's zero padding, its
                    // sums passed through a small buffer so that nothing past the row's end is
                    // read or written (one pixel at a time, they cost conv1_1 two thirds more
                    // at widths that are not a multiple of 8); from zero in the first window, as
                    // every tile.
                    let rem = wd - full;
                    let sums = std::array::from_fn(|r| {
                        [std::array::from_fn(|l| {
                            if l < rem && !first {
                                out[r][at(full) + l]
                            } else {
                                0.0
                            }
                        })]
                    });
                    let acc = tile::<R, 1, AVX2>(&win, &taps, dy, full, sums);
                    for (out_r, [acc_r]) in out.iter_mut().zip(&acc) {
                        out_r[at(full)..at(full) + rem].copy_from_slice(&acc_r[..rem]);
                    }
                }
            }
            win.give_back();
        }
        let relu = self.act.relu();
        for (r, out_r) in out.iter_mut().enumerate() {
            let b = self.bias.map_or(0.0, |b| b[o0 + r]);
            for v in out_r.iter_mut() {
                let s = *v + b;
                *v = if relu { s.max(0.0) } else { s };
            }
            if let Some(mask) = self.act.mask() {
                mask.set(isa, out_r, ((o0 + r) * self.g.h + y0) * wd);
            }
        }
    }
}

/// Adds one register tile's taps (band row `dy`, pixels `x..x + 8V`) to the sums so far in
/// `out[r][at..at + 8V]` — or, for the `first` window, writes them there: the sums start at zero
/// instead of being read (the output is all zeros then; reading them back from memory cost more
/// than the multiply-adds at conv1_1, whose 3 input channels are a single window).
#[inline(always)]
fn add_tile<const R: usize, const V: usize, const AVX2: bool>(
    win: &Window,
    taps: &Taps,
    (dy, x, at): (usize, usize, usize),
    first: bool,
    out: &mut [&mut [f32]],
) {
    let sums = std::array::from_fn(|r| {
        std::array::from_fn(|v| {
            if first {
                [0.0; LANES]
            } else {
                out[r][at + v * LANES..at + (v + 1) * LANES]
                    .try_into()
                    .expect("8 floats")
            }
        })
    });
    let acc = tile::<R, V, AVX2>(win, taps, dy, x, sums);
    for (out_r, acc_r) in out.iter_mut().zip(&acc) {
        out_r[at..at + V * LANES].copy_from_slice(acc_r.as_flattened());
    }
}

/// The filter taps one window contributes to one channel group, copied into a small array
/// in the order the tile reads them: `w[o0 + r, c0 + c, u, v]` at `((c·3 + u)·3 + v)·4 + r`
/// (window channel `c`, group output `r`), zero past the group's last output.
struct Taps {
    packed: [f32; WINDOW_CHANNELS * 9 * TILE_CHANNELS],
    channels: usize,
}

impl Taps {
    /// The taps of filters `w` (`C_out×C_in×3×3`, `C_in = c_in`) from input channels `channels`
    /// to outputs `o0..o0 + outputs`.
    fn new(
        w: &[f32],
        c_in: usize,
        o0: usize,
        outputs: usize,
        channels: std::ops::Range<usize>,
    ) -> Taps {
        let mut packed = [0.0; WINDOW_CHANNELS * 9 * TILE_CHANNELS];
        for (c, ch) in channels.clone().enumerate() {
            for k in 0..9 {
                for r in 0..outputs {
                    packed[(c * 9 + k) * TILE_CHANNELS + r] = w[((o0 + r) * c_in + ch) * 9 + k];
                }
            }
        }
        Taps {
            packed,
            channels: channels.len(),
        }
    }

    /// `w[o0 + r, c0 + c, u, v]`.
    #[inline(always)]
    fn at(&self, r: usize, c: usize, u: usize, v: usize) -> f32 {
        self.packed[((c * 3 + u) * 3 + v) * TILE_CHANNELS + r]
    }
}

/// The register tile: `sums` plus the window's taps for output channels `o0..o0 + R` at band
/// row `dy`, pixels `x..x + 8V`, added over channels, kernel rows and kernel columns in that
/// order. `AVX2` says the caller runs with AVX2 + FMA (see [`tile_avx2`]).
#[inline(always)]
fn tile<const R: usize, const V: usize, const AVX2: bool>(
    win: &Window,
    taps: &Taps,
    dy: usize,
    x: usize,
    sums: [[[f32; LANES]; V]; R],
) -> [[[f32; LANES]; V]; R] {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is only set on the path `band_avx2` takes, which runs only after the
        // processor reported AVX2 and FMA.
        return unsafe { tile_avx2::<R, V>(win, taps, dy, x, sums) };
    }
    let mut acc = sums;
    for c in 0..taps.channels {
        for u in 0..3 {
            let row = &win.row(c, dy + u)[x..x + V * LANES + 2];
            for v in 0..3 {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let wt = taps.at(r, c, u, v);
                    for (vv, acc_rv) in acc_r.iter_mut().enumerate() {
                        for (l, a) in acc_rv.iter_mut().enumerate() {
                            *a += wt * row[vv * LANES + v + l];
                        }
                    }
                }
            }
        }
    }
    acc
}

/// [`tile`] with AVX2 + FMA intrinsics (loops, not closures, around them: a closure would not
/// inherit this function's target features).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tile_avx2<const R: usize, const V: usize>(
    win: &Window,
    taps: &Taps,
    dy: usize,
    x: usize,
    sums: [[[f32; LANES]; V]; R],
) -> [[[f32; LANES]; V]; R] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for (acc_r, sums_r) in acc.iter_mut().zip(&sums) {
        for (a, s) in acc_r.iter_mut().zip(sums_r) {
            // SAFETY: `s` is 8 floats.
            *a = unsafe { _mm256_loadu_ps(s.as_ptr()) };
        }
    }
    for c in 0..taps.channels {
        for u in 0..3 {
            let row = &win.row(c, dy + u)[x..x + V * LANES + 2];
            for v in 0..3 {
                let mut xs = [_mm256_setzero_ps(); V];
                for (vv, xs_v) in xs.iter_mut().enumerate() {
                    // SAFETY: vv·8 + v + 8 ≤ 8V + 2, the length of `row`.
                    *xs_v = unsafe { _mm256_loadu_ps(row.as_ptr().add(vv * LANES + v)) };
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let wt = _mm256_set1_ps(taps.at(r, c, u, v));
                    for (acc_rv, xs_v) in acc_r.iter_mut().zip(xs) {
                        *acc_rv = _mm256_fmadd_ps(wt, xs_v, *acc_rv);
                    }
                }
            }
        }
    }
    let mut out = [[[0.0f32; LANES]; V]; R];
    for (out_r, acc_r) in out.iter_mut().zip(acc) {
        for (out_rv, acc_rv) in out_r.iter_mut().zip(acc_r) {
            // SAFETY: `out_rv` is 8 floats.
            unsafe { _mm256_storeu_ps(out_rv.as_mut_ptr(), acc_rv) };
        }
    }
    out
}

/// [`add_tile`] for a tile of `V` AVX-512 registers per output channel (16·V pixels): the same
/// taps in the same order, each a fused multiply-add, so each output gets the same bits as from
/// the AVX2 tile; twice the pixels per instruction, and with 32 registers the accumulators never
/// leave them — even at `V` = [`TILE_VECS_512`], whose `R·V` accumulators, `V` input vectors and
/// one broadcast weight take at most 21.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
#[inline]
fn add_tile_avx512<const R: usize, const V: usize>(
    win: &Window,
    taps: &Taps,
    (dy, x, at): (usize, usize, usize),
    first: bool,
    out: &mut [&mut [f32]],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if !first {
        for (acc_r, out_r) in acc.iter_mut().zip(out.iter()) {
            let sums = &out_r[at..at + V * LANES_512];
            for (vv, a) in acc_r.iter_mut().enumerate() {
                // SAFETY: `sums` holds V·16 floats.
                *a = unsafe { _mm512_loadu_ps(sums.as_ptr().add(vv * LANES_512)) };
            }
        }
    }
    for c in 0..taps.channels {
        for u in 0..3 {
            let row = &win.row(c, dy + u)[x..x + V * LANES_512 + 2];
            for v in 0..3 {
                let mut xs = [_mm512_setzero_ps(); V];
                for (vv, xs_v) in xs.iter_mut().enumerate() {
                    // SAFETY: vv·16 + v + 16 ≤ 16V + 2, the length of `row`.
                    *xs_v = unsafe { _mm512_loadu_ps(row.as_ptr().add(vv * LANES_512 + v)) };
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let wt = _mm512_set1_ps(taps.at(r, c, u, v));
                    for (acc_rv, xs_v) in acc_r.iter_mut().zip(xs) {
                        *acc_rv = _mm512_fmadd_ps(wt, xs_v, *acc_rv);
                    }
                }
            }
        }
    }
    for (acc_r, out_r) in acc.iter().zip(out.iter_mut()) {
        let sums = &mut out_r[at..at + V * LANES_512];
        for (vv, a) in acc_r.iter().enumerate() {
            // SAFETY: `sums` holds V·16 floats.
            unsafe { _mm512_storeu_ps(sums.as_mut_ptr().add(vv * LANES_512), *a) };
        }
    }
}
