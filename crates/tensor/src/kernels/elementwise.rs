//! Elementwise kernels large enough to be worth running in parallel (VGG's first ReLUs see 12.6
//! million elements). Chunks are fixed in size, so results never depend on the thread count.
//! The ReLU's bit mask is built and applied with AVX2 where the processor has it (8 values per
//! instruction; the same bits as the one-value-at-a-time loops, which other processors run).

use crate::kernels::fresh::Fresh;
use crate::kernels::isa::Isa;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Elements per rayon task.
const CHUNK: usize = 1 << 16;

/// A vector of `len` zeros, cleared by all threads: for results that must start at zero (a
/// scatter such as the pooling's derivative, the kernels not yet written band by band).
/// `vec![0.0; len]` clears the memory on the calling thread alone (glibc's `calloc` must clear
/// reused heap memory) while the other threads wait — 50 MB for one of conv1_2's maps at
/// 512×384. The convolutions' results go further: see [`super::fresh`].
pub fn zeroed(len: usize) -> Vec<f32> {
    filled(len, 0.0)
}

/// A vector of `len` copies of `value`, written by all threads (see [`zeroed`]): the derivative
/// of a mean or a sum, spread over every element.
pub fn filled(len: usize, value: f32) -> Vec<f32> {
    if len <= CHUNK {
        return vec![value; len];
    }
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(value, len).with_min_len(CHUNK));
    v
}

/// `f(xᵢ)` for every element, by all threads in fixed chunks: the ReLU and the losses'
/// elementwise ops (scaling, squaring, negating) on maps of up to millions of values, which one
/// thread would walk while the other waits. A vector of at most one chunk (a loss term, a Gram
/// matrix) is done on the calling thread: handing it to the pool would cost more.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    if x.len() <= CHUNK {
        return x.iter().map(|&v| f(v)).collect();
    }
    let mut y = Fresh::new(x.len());
    y.parts()
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                o.write(f(v));
            }
        });
    // SAFETY: the chunks cover every value, and each was written.
    unsafe { y.into_written() }
}

/// `f(aᵢ, bᵢ)` for every pair of elements (same lengths), by all threads as [`map`].
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: lengths differ");
    if a.len() <= CHUNK {
        return a.iter().zip(b).map(|(&u, &v)| f(u, v)).collect();
    }
    let mut y = Fresh::new(a.len());
    y.parts()
        .par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(yc, (ac, bc))| {
            for (o, (&u, &v)) in yc.iter_mut().zip(ac.iter().zip(bc)) {
                o.write(f(u, v));
            }
        });
    // SAFETY: as in `map`.
    unsafe { y.into_written() }
}

/// `acc += g`, elementwise, by all threads: how the tape sums the gradients of a value read by
/// more than one op (each style layer's map feeds both the next convolution and its Gram matrix:
/// 100 MB of them at 512×384, which one thread would add while the other waits).
pub fn add_assign(acc: &mut [f32], g: &[f32]) {
    assert_eq!(acc.len(), g.len(), "add_assign: lengths differ");
    acc.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .for_each(|(ac, gc)| {
            for (a, &v) in ac.iter_mut().zip(gc) {
                *a += v;
            }
        });
}

/// `Σ x` in f64, in pieces of 2¹⁶ values summed in parallel (eight partial sums each),
/// the pieces' sums then added in order: the same result for any thread count. A loss's mean
/// over a map (the content term's 1.6 M squared differences at 512×384) took 1.2 ms as one
/// running sum on one thread.
pub fn sum_f64(x: &[f32]) -> f64 {
    let pieces: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|piece| {
            let mut sums = [0.0f64; 8];
            let body = piece.len() - piece.len() % 8;
            for c in piece[..body].chunks_exact(8) {
                add8(&mut sums, c.try_into().expect("8 values"));
            }
            for (s, &v) in sums.iter_mut().zip(&piece[body..]) {
                *s += v as f64;
            }
            sums.iter().sum::<f64>()
        })
        .collect();
    pieces.iter().sum()
}

/// `Σ (aᵢ − bᵢ)²` in f64 (same lengths), each square in f32 — what [`sum_f64`] gives for the
/// map of squared differences, in the same order, without making the map.
pub fn squared_distance_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "squared_distance: lengths differ");
    let square = |u: f32, v: f32| (u - v) * (u - v);
    let pieces: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(pa, pb)| {
            let mut sums = [0.0f64; 8];
            let body = pa.len() - pa.len() % 8;
            for (ca, cb) in pa[..body].chunks_exact(8).zip(pb[..body].chunks_exact(8)) {
                add8(&mut sums, std::array::from_fn(|k| square(ca[k], cb[k])));
            }
            for (s, (&u, &v)) in sums.iter_mut().zip(pa[body..].iter().zip(&pb[body..])) {
                *s += square(u, v) as f64;
            }
            sums.iter().sum::<f64>()
        })
        .collect();
    pieces.iter().sum()
}

/// Adds 8 terms to the 8 partial sums of [`sum_f64`] and [`squared_distance_f64`].
#[inline(always)]
fn add8(sums: &mut [f64; 8], terms: [f32; 8]) {
    for (s, v) in sums.iter_mut().zip(terms) {
        *s += v as f64;
    }
}

/// `y = max(x, 0)`.
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    map(x, |v| v.max(0.0))
}

/// The ReLU's derivative as one bit per element: bit `i % 64` of word `i / 64` is set iff
/// `y[i] > 0`. A backward pass needs only this, not the map itself — 1/32 of its memory.
pub fn relu_mask(y: &[f32]) -> Vec<u64> {
    relu_mask_with(Isa::detect(), y)
}

/// [`relu_mask`] with the comparisons compiled for `isa` (which the processor must support: take
/// it from [`Isa::available`]); every level gives the same bits (tested).
pub fn relu_mask_with(isa: Isa, y: &[f32]) -> Vec<u64> {
    let mut mask = vec![0u64; y.len().div_ceil(64)];
    let writer = MaskWriter::new(&mut mask);
    // Chunks of whole words: every word is one task's.
    y.par_chunks(CHUNK)
        .enumerate()
        .for_each(|(k, yc)| writer.at(0).set(isa, yc, k * CHUNK));
    mask
}

/// The mask bits of at most 64 values, the first in bit 0, one value at a time.
fn word_bits(ys: &[f32]) -> u64 {
    ys.iter()
        .enumerate()
        .fold(0, |acc, (bit, &v)| acc | (u64::from(v > 0.0) << bit))
}

/// [`word_bits`] with AVX2: each group of 8 values is one comparison with 0 (ordered, so a NaN
/// gives 0 as `v > 0.0` does) and one `movemask`, whose 8 bits are the group's bits of the word;
/// the values after the last whole group one at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn word_bits_avx2(ys: &[f32]) -> u64 {
    use std::arch::x86_64::*;
    let mut w = 0u64;
    let groups = ys.chunks_exact(8);
    let rest = groups.remainder();
    for (k, group) in groups.enumerate() {
        // SAFETY: `group` holds 8 values.
        let v = unsafe { _mm256_loadu_ps(group.as_ptr()) };
        let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_setzero_ps());
        w |= u64::from(_mm256_movemask_ps(positive) as u8) << (8 * k);
    }
    if rest.is_empty() {
        return w;
    }
    w | word_bits(rest) << (ys.len() - rest.len())
}

/// A ReLU mask ([`relu_mask`]'s bits) that the parallel tasks computing a map fill in as they
/// store its rows — each row's bits taken while the row is still in cache, instead of by a
/// pass of their own over the whole map once it is written (at relu1_1, 50 MB read back from
/// memory at 512×384). Rows need not start on a word boundary: a word that two tasks' rows
/// share is combined by an atomic `or`.
pub struct MaskWriter<'a> {
    words: &'a [AtomicU64],
}

impl<'a> MaskWriter<'a> {
    /// A writer into `words`, which must be all zeros (bits are only ever set).
    pub fn new(words: &'a mut [u64]) -> MaskWriter<'a> {
        const { assert!(align_of::<AtomicU64>() == align_of::<u64>()) };
        // SAFETY: `AtomicU64` has the size and bit validity of `u64`, and (asserted above) its
        // alignment; the exclusive borrow keeps every other access away while the writer lives.
        let words = unsafe { &*(words as *mut [u64] as *const [AtomicU64]) };
        MaskWriter { words }
    }

    /// The place of a map's mask from bit `first` on: the mask of image `i` of a batch of
    /// `len`-value maps starts at `i·len`.
    pub fn at(&self, first: usize) -> MaskAt<'_> {
        MaskAt {
            writer: self,
            first,
        }
    }
}

/// Where the mask bits of one map go: a [`MaskWriter`]'s words from bit `first` on, value `i`
/// of the map being bit `first + i`.
#[derive(Clone, Copy)]
pub struct MaskAt<'a> {
    writer: &'a MaskWriter<'a>,
    first: usize,
}

impl MaskAt<'_> {
    /// The place `by` values further on: where the mask of a map's later rows starts.
    pub fn shifted(self, by: usize) -> Self {
        MaskAt {
            first: self.first + by,
            ..self
        }
    }

    /// Sets the bits of the map's values `at..at + values.len()` from `values` (bit set iff the
    /// value is `> 0`), the comparisons compiled for `isa` (panics if the processor does not
    /// run it). Tasks calling this at the same time must be given disjoint ranges.
    pub fn set(self, isa: Isa, values: &[f32], at: usize) {
        isa.assert_available("relu mask");
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: checked above that the processor runs `isa`, which includes AVX2.
            Isa::Avx2Fma | Isa::Avx512F => unsafe { self.set_avx2(values, at) },
            _ => self.set_words::<false>(values, at),
        }
    }

    /// [`MaskAt::set`] compiled with AVX2, so that [`word_bits_avx2`] is inlined into its loop.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn set_avx2(self, values: &[f32], at: usize) {
        self.set_words::<true>(values, at)
    }

    /// See [`MaskAt::set`]: a word at a time, its bits by [`word_bits_avx2`] when `AVX2` (the
    /// caller runs with AVX2), else by [`word_bits`].
    #[inline(always)]
    fn set_words<const AVX2: bool>(self, values: &[f32], at: usize) {
        let words = self.writer.words;
        let mut i = 0;
        while i < values.len() {
            let (word, shift) = ((self.first + at + i) / 64, (self.first + at + i) % 64);
            let take = (64 - shift).min(values.len() - i);
            let part = &values[i..i + take];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `AVX2` is set only on `set_avx2`'s path, taken after the level check.
            let bits = if AVX2 {
                unsafe { word_bits_avx2(part) }
            } else {
                word_bits(part)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let bits = word_bits(part);
            let bits = bits << shift;
            if take == 64 {
                // A whole word inside this range: no other task's range reaches it.
                words[word].store(bits, Ordering::Relaxed);
            } else if bits != 0 {
                words[word].fetch_or(bits, Ordering::Relaxed);
            }
            i += take;
        }
    }
}

/// `g ← g` where the ReLU's output was positive (its [`relu_mask`] bit is set), else 0 — the
/// subgradient 0 at the kink. In place: the incoming gradient becomes the outgoing one.
pub fn relu_backward_in_place(g: &mut [f32], mask: &[u64]) {
    relu_backward_in_place_with(Isa::detect(), g, mask)
}

/// [`relu_backward_in_place`] compiled for `isa` (which the processor must support: take it
/// from [`Isa::available`]); every level gives the same values (tested).
pub fn relu_backward_in_place_with(isa: Isa, g: &mut [f32], mask: &[u64]) {
    isa.assert_available("relu_backward");
    g.par_chunks_mut(CHUNK)
        .zip(mask.par_chunks(CHUNK / 64))
        .for_each(|(gc, mc)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: checked above that the processor runs `isa`; both levels include AVX2.
            Isa::Avx2Fma | Isa::Avx512F => unsafe { apply_mask_avx2(gc, mc) },
            _ => apply_mask(gc, mc),
        });
}

/// Zeroes the values of `g` whose bit in `words` is clear, one value at a time.
fn apply_mask(g: &mut [f32], words: &[u64]) {
    for (gs, &word) in g.chunks_mut(64).zip(words) {
        for (bit, v) in gs.iter_mut().enumerate() {
            if word >> bit & 1 == 0 {
                *v = 0.0;
            }
        }
    }
}

/// [`apply_mask`] with AVX2: each byte of a word becomes an 8-lane mask ([`keep_lanes`]) that
/// keeps or zeroes 8 values with one `and`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn apply_mask_avx2(g: &mut [f32], words: &[u64]) {
    use std::arch::x86_64::*;
    let full = g.len() / 64;
    for (gs, &word) in g.chunks_exact_mut(64).zip(words) {
        for (k, group) in gs.chunks_exact_mut(8).enumerate() {
            // SAFETY: `group` holds 8 values.
            unsafe {
                let v = _mm256_loadu_ps(group.as_ptr());
                let kept = _mm256_and_ps(v, keep_lanes(word >> (8 * k)));
                _mm256_storeu_ps(group.as_mut_ptr(), kept);
            }
        }
    }
    apply_mask(&mut g[full * 64..], &words[full..]);
}

/// The low byte of `bits` as an 8-lane mask: lane `l` all ones if bit `l` is set, else zeros
/// (the byte broadcast, each lane testing its own bit).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn keep_lanes(bits: u64) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let byte = _mm256_set1_epi32(bits as i32 & 0xff);
    _mm256_castsi256_ps(_mm256_cmpeq_epi32(
        _mm256_and_si256(byte, lane_bits),
        lane_bits,
    ))
}

/// `out[j] = g[j]` where bit `first_bit + j` of `mask` is set, else 0: the ReLU's backward
/// ([`relu_backward_in_place`]) on a copy of part of the gradient, for a kernel that reads the
/// gradient a row at a time anyway (the convolutions' input gradients, through
/// [`Source::Masked`](crate::kernels::conv::Source::Masked)) — so the map is never masked in a
/// pass of its own. Serial: the callers run it inside their own tasks. Compiled for `isa`
/// (which the processor must support); every level gives the same values (tested).
pub fn relu_backward_copy_with(
    isa: Isa,
    g: &[f32],
    mask: &[u64],
    first_bit: usize,
    out: &mut [f32],
) {
    isa.assert_available("relu_backward_copy");
    assert_eq!(g.len(), out.len(), "relu_backward_copy: lengths differ");
    assert!(
        (first_bit + g.len()).div_ceil(64) <= mask.len(),
        "relu_backward_copy: the mask is too short"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2Fma {
        // SAFETY: checked above that the processor runs `isa`, which includes AVX2.
        done = unsafe { masked_copy_avx2(g, mask, first_bit, out) };
    }
    for ((o, &v), bit) in out[done..]
        .iter_mut()
        .zip(&g[done..])
        .zip(first_bit + done..)
    {
        *o = if mask[bit / 64] >> (bit % 64) & 1 == 1 {
            v
        } else {
            0.0
        };
    }
}

/// [`relu_backward_copy_with`]'s whole groups of 8 values (bit `first_bit` of `mask` for
/// `g[0]`), by [`keep_lanes`] on the group's 8 bits wherever they start in the mask (a row of an
/// odd-sized map rarely starts on a byte); returns how many values it copied.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn masked_copy_avx2(g: &[f32], mask: &[u64], first_bit: usize, out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let whole = g.len() - g.len() % 8;
    for (k, (src, dst)) in g[..whole]
        .chunks_exact(8)
        .zip(out[..whole].chunks_exact_mut(8))
        .enumerate()
    {
        let (word, shift) = ((first_bit + 8 * k) / 64, (first_bit + 8 * k) % 64);
        // The group's 8 bits, from the next word too when they straddle two (its bits are in
        // the mask then: the caller checked that the mask covers every value).
        let bits = if shift > 56 {
            mask[word] >> shift | mask[word + 1] << (64 - shift)
        } else {
            mask[word] >> shift
        };
        // SAFETY: `src` and `dst` hold 8 values each.
        unsafe {
            let v = _mm256_loadu_ps(src.as_ptr());
            _mm256_storeu_ps(dst.as_mut_ptr(), _mm256_and_ps(v, keep_lanes(bits)));
        }
    }
    whole
}
