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
//!
//! Where each part lives: `transforms.rs` holds the arithmetic (`Bᵀ·d`, `G·g`, `Aᵀ·m` and the
//! filters' transform), `input.rs` the input transform of a band, `output.rs` the output
//! transform and everything a pass does as it stores (bias, ReLU and its mask, pooling, the
//! rotation of an input gradient, accumulation), `lanes.rs` the eight-tile vectors both
//! transforms compute in; this file chooses the bands, runs each band's three stages
//! (`convolve`), and holds the public passes.

mod input;
mod lanes;
mod output;
mod transforms;

pub use transforms::transform_filters;

use super::{Activation, ConvGeometry, Source};
use crate::kernels::fresh::{self, Fresh};
use crate::kernels::gemm::{gemm, MatMut, MatRef};
use crate::kernels::isa::Isa;
use crate::kernels::scratch;
use input::{transform_input, Band};
use output::{transform_output, Dest, Epilogue, RowsAt};
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use transforms::filter_position;

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
/// Tiles per band for layers with large filters, those whose one position's filters `U_e`
/// (`C_out × C_in`) hold at least [`LARGE_FILTERS`] values: VGG's conv4 and conv5 layers. Such a
/// matrix (512 KiB to 1 MiB) does not stay in a core's L2 cache from one band to the next, and
/// the GEMM packs it afresh for every band it multiplies; a band three times as large packs it
/// once for three times the work. Measured on an Intel Xeon (`nst bench`, conv4_1 … conv5_1
/// against conv1's unchanged layers in the same run, BENCHMARKS.md): at 1024×768, 64 → 192 tiles
/// took 9% off their forward passes and 20% off their input gradients (256 did the same, 128
/// less); at 512×384, where 192 tiles are a whole conv4 map, 7% and 16%; at 2048×1536 it made
/// no difference (−1%, within the noise). The smaller layers keep [`BAND_TARGET_TILES`]: conv3's
/// were slower with 192 (twenty-second session). The price is memory: a band's workspace at
/// conv4 grows from 9 to 27 MiB ([`band_workspace`]).
const LARGE_BAND_TARGET_TILES: usize = 192;
/// `C_in · C_out` from which a layer's bands aim for [`LARGE_BAND_TARGET_TILES`]: 256 · 512.
const LARGE_FILTERS: usize = 256 * 512;
/// Tiles per vector of the `gemm` crate's AVX-512 kernel (16 f32): the unit in which it
/// computes a band's last, partial block of tiles.
const GEMM_TILE_VECTOR: usize = 16;
/// Input channels per task of the input transform.
const CHANNEL_GROUP: usize = 16;

/// The tiles a band of `g` aims for: [`LARGE_BAND_TARGET_TILES`] for large filters, else
/// [`BAND_TARGET_TILES`].
fn band_target(g: &ConvGeometry) -> usize {
    if g.c_in * g.c_out >= LARGE_FILTERS {
        LARGE_BAND_TARGET_TILES
    } else {
        BAND_TARGET_TILES
    }
}

/// The tile rows per band of `g`'s map, and the bands `[t0, t1)` of its tile rows (none for an
/// empty map, which the memory plan meets at a tiny image's deep layers).
fn bands(g: &ConvGeometry) -> (usize, Vec<(usize, usize)>) {
    let (tile_rows, tile_cols) = (g.h.div_ceil(M), g.w.div_ceil(M));
    if tile_rows == 0 || tile_cols == 0 {
        return (1, Vec::new());
    }
    let rows = rows_per_band(tile_rows, tile_cols, band_target(g));
    let list = (0..tile_rows)
        .step_by(rows)
        .map(|t0| (t0, (t0 + rows).min(tile_rows)))
        .collect();
    (rows, list)
}

/// The tile rows per band: of the counts that keep a band within twice `target` tiles (or one
/// row, if a row alone is more), the one whose bands leave the fewest of the GEMM kernel's
/// 16-tile vectors part-empty — a band's tiles are the products' contiguous dimension, and a
/// band of 72 tiles pays for 80 — and of those, the one nearest the target. At 512×384 every
/// layer's rows make whole vectors at [`BAND_TARGET_TILES`] (128, 64, 32 tiles a row); in
/// portrait, 384×512, conv3's rows of 24 tiles made bands of 72 (now 48).
fn rows_per_band(tile_rows: usize, tile_cols: usize, target: usize) -> usize {
    let most = (2 * target / tile_cols).clamp(1, tile_rows.max(1));
    // Tiles computed in part-empty vectors over all bands, with `r` rows a band.
    let wasted = |r: usize| -> usize {
        (0..tile_rows)
            .step_by(r)
            .map(|t0| ((t0 + r).min(tile_rows) - t0) * tile_cols)
            .map(|n| n.next_multiple_of(GEMM_TILE_VECTOR) - n)
            .sum()
    };
    (1..=most)
        .min_by_key(|&r| (wasted(r), (r * tile_cols).abs_diff(target)))
        .unwrap_or(1)
}

/// Independent tasks of the forward pass's GEMM stage for `g`, bands × 36, the stage that does
/// most of the work (the profile reports it). The input transform makes bands × ⌈C_in/16⌉
/// tasks — fewer than 36 per band below 576 input channels — and the output transform bands ×
/// C_out.
pub fn tasks(g: &ConvGeometry) -> usize {
    bands(g).1.len() * E
}

/// The floats of a band of `n` tiles' workspace: its transformed input `V` (`36 × C_in × n`) and
/// its products `M` (`36 × C_out × n`) — what [`convolve`] takes for each band, and what
/// [`band_workspace`] counts.
fn band_floats(g: &ConvGeometry, n: usize) -> (usize, usize) {
    (E * g.c_in * n, E * g.c_out * n)
}

/// The bytes of the workspace of `g`'s largest band: its transformed input `V` (`36 × C_in ×
/// tiles` floats) and products `M` (`36 × C_out × tiles`). A thread keeps the largest workspace
/// it has used for the next band (`scratch`'s pools), and holds two when, waiting inside one band
/// for a part another thread took, it starts another; `nst-transfer`'s memory plan counts two
/// per thread. An empty map has no band and needs none.
pub fn band_workspace(g: &ConvGeometry) -> u64 {
    let rows = bands(g)
        .1
        .iter()
        .map(|&(t0, t1)| t1 - t0)
        .max()
        .unwrap_or(0);
    let (v, m) = band_floats(g, rows * g.w.div_ceil(M));
    (size_of::<f32>() * (v + m)) as u64
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
    let tile_cols = g.w.div_ceil(M);
    let (rows_per_band, band_list) = bands(g);
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
            let (v_len, m_len) = band_floats(g, n);
            // V: [36][C_in][n]. Each channel group's input-transform task gets its rows of all
            // 36 matrices, so the GEMMs below see one contiguous C_in × n operand each.
            // Every element of V and M is written before it is read (transform, then GEMM with
            // beta = 0), so reused buffers need no zeroing.
            let mut v = scratch::take(v_len);
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
            let mut m = scratch::take(m_len);
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
