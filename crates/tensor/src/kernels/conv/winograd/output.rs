//! The output transform: `Y = Aᵀ M A` for every tile of a band, finished as it is stored — bias,
//! ReLU and its mask, 2×2 max pooling, the rotation of an input gradient, or the addition into a
//! gradient already there ([`Epilogue`], [`Dest`]).

use super::lanes::{block_start, Lanes, LANES};
use super::transforms::output_1d;
use super::{give_work, take_work, E, M, T};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::elementwise::MaskAt;
use crate::kernels::isa::Isa;
use crate::kernels::prefetch;

/// How a pass finishes each output value and stores it.
#[derive(Clone, Copy)]
pub(super) struct Epilogue<'a> {
    /// Added to every value of output channel `o`: `bias[o]`.
    pub(super) bias: Option<&'a [f32]>,
    /// Then `max(·, 0)`.
    pub(super) relu: bool,
    /// And the ReLU's mask bits of the rows stored, from the band's first row of the plane on
    /// (forward passes into [`Dest::Rows`] only).
    pub(super) mask: Option<MaskAt<'a>>,
    /// The planes rotated by 180°: the input's as they are read, the result's as it is stored
    /// (row `i` of a band's result into row `rows − 1 − i` of its `out`, each row's values
    /// reversed) — how [`input_gradient`](super::input_gradient) works on rotated planes
    /// without a pass of its own.
    pub(super) reversed: bool,
    /// Added to what the output holds instead of overwriting it
    /// ([`input_gradient_from`](super::input_gradient_from)).
    pub(super) accumulate: bool,
}

/// Where the output transform puts a band's rows of one output plane.
pub(super) enum Dest<'a> {
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
pub(super) struct RowsAt {
    pub(super) addr: usize,
    pub(super) len: usize,
}

/// `Y = Aᵀ M A` (+ bias, then ReLU if asked: the `epilogue`) for output channel `o` over the
/// band's tiles, written into `out`, the band's rows of that channel's plane (`rows × W`, the
/// last band's possibly fewer than 4 per tile row; rotated by 180° if the epilogue says
/// `reversed`). `m` holds the band's products `[36][C_out][n]`. Compiled for `isa`.
pub(super) fn transform_output(
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
        // SAFETY: as in the input transform (`transform_input`): both levels mean the processor
        // has AVX2 and FMA.
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
/// output row. `AVX2` as in the input transform's `transform_input_body`.
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
            // Whole blocks as fixed-size copies (a variable length is a call to `memcpy` for
            // 64 bytes: ~1% of `nst bench`'s samples, BENCHMARKS.md); the row's last block as
            // it fits.
            match (
                dst[j..].first_chunk_mut::<{ 2 * LANES }>(),
                arg[j..].first_chunk_mut::<{ 2 * LANES }>(),
            ) {
                (Some(d), Some(a)) => (*d, *a) = (vals, wins),
                _ => {
                    let n = pw - j;
                    dst[j..].copy_from_slice(&vals[..n]);
                    arg[j..].copy_from_slice(&wins[..n]);
                }
            }
        }
    }
}

/// The inverse of the input transform's `split_phases`, into an output row: `row[4·t + c] =
/// phases[c·n + t]`, for the `row.len()` values the row has (`phases` holds `4·n` values, `n` a
/// multiple of [`LANES`], `4·n ≥ row.len()`). With `AVX2`, whole groups of 8 tiles are
/// transposed in registers, the rest moved one by one.
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
        // SAFETY: as in the input transform's `split_phases`.
        done = unsafe { interleave_phases_avx2(phases, row) };
    }
    for (t, px) in row.chunks_mut(M).enumerate().skip(done) {
        for (c, d) in px.iter_mut().enumerate() {
            *d = phases[c * n + t];
        }
    }
}

/// [`interleave_phases`] with AVX2 shuffles for every full group of 8 tiles (32 values of the
/// row); returns the tiles done. The steps of the input transform's `split_phases_avx2` in
/// reverse: 4×4 transposes within each 128-bit half give tiles (t, t+4), (t+1, t+5), (t+2, t+6),
/// (t+3, t+7), and the halves are regrouped into four runs of eight values.
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
