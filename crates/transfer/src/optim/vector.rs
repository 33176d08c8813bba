//! The optimizers' vector operations: the dot product `Σ aᵢbᵢ` and `y ← y + α·x`, on image-sized
//! vectors with `f64` arithmetic, in parallel pieces. The vector written (`y`) is `f32`; the ones
//! only read (`a`, `x`) may also be stored in half precision ([`Stored`]), as L-BFGS keeps its
//! history ([`HalfVector`](super::half_vector::HalfVector)).
//!
//! L-BFGS's two-loop recursion reads every stored pair twice per step, once per loop (an
//! [`axpy_dot`] each) — with the classic history of 100 pairs at 512×384, about 1 GB of vectors
//! per step in f32, half that in half precision — so they set the cost of a step beside the
//! network's evaluation. Each has an AVX2 build (picked at run time, see [`Isa`]) that gives the
//! same bits as the baseline one: widening an `f32` or half-precision value to `f64` is exact, so
//! is the product of two such values, and the fused multiply-add of the dot product rounds once,
//! as the baseline's multiply-then-add does; `axpy` keeps its multiply and its add apart.

use half::f16;
use nst_tensor::kernels::isa::Isa;
use rayon::prelude::*;

/// How a vector that the operations only read is stored: `f32`, or half precision (IEEE 754
/// binary16, [`half::f16`](struct@f16)). Either is widened exactly to `f32` as it is read.
pub(crate) trait Stored: Copy + Send + Sync {
    /// The value as an `f32` (exact).
    fn widen(self) -> f32;
    /// Eight values from `p` as one AVX2 register, widened: inlined into the AVX2 builds below,
    /// which enable the instructions it needs (AVX2 and F16C).
    ///
    /// # Safety
    /// `p` must point to eight readable values, and the processor must have AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Stored for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's promise: eight readable values, AVX on this processor.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl Stored for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's promise: eight readable values (16 bytes), F16C on this processor.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
}

/// Length of the pieces [`dot`] and [`axpy`] split their vectors into, one rayon task each. Fixed,
/// so that a dot product — the pieces' sums added in order — is the same for any thread count.
/// 2¹⁴ values (64 KiB of f32, 32 KiB of f16) keep each task long enough to pay for itself.
pub(super) const PIECE: usize = 1 << 14;

/// Partial sums [`dot`] keeps apart within a piece.
const DOT_LANES: usize = 8;

/// `Σ a_i b_i`, accumulated in f64: each piece of [`PIECE`] values in parallel, then the pieces'
/// sums in order. Within a piece, [`DOT_LANES`] partial sums (sum `l` takes the values `i ≡ l`
/// mod 8, in order) are added together at the end: one running sum made every addition wait for
/// the one before — four cycles a value, half the speed the memory delivers the vectors at
/// (BENCHMARKS.md); eight independent ones let the additions overlap.
pub(crate) fn dot<T: Stored>(a: &[T], b: &[f32]) -> f64 {
    dot_with(Isa::detect().at_most_avx2(), a, b)
}

/// [`dot`] with the build for `isa` (which the processor must run).
fn dot_with<T: Stored>(isa: Isa, a: &[T], b: &[f32]) -> f64 {
    isa.assert_available("dot");
    let pieces: Vec<f64> = a
        .par_chunks(PIECE)
        .zip(b.par_chunks(PIECE))
        .map(|(a, b)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `assert_available` above: the processor has AVX2, FMA and F16C.
            Isa::Avx2Fma | Isa::Avx512F => unsafe { dot_piece_avx2(a, b) },
            _ => dot_piece(a, b),
        })
        .collect();
    pieces.iter().sum()
}

/// One piece of [`dot`], `a` and `b` of the same length.
fn dot_piece<T: Stored>(a: &[T], b: &[f32]) -> f64 {
    let mut sums = [0.0f64; DOT_LANES];
    let body = a.len() - a.len() % DOT_LANES;
    for (x, y) in a[..body]
        .chunks_exact(DOT_LANES)
        .zip(b[..body].chunks_exact(DOT_LANES))
    {
        add_products(&mut sums, x, y);
    }
    add_products(&mut sums, &a[body..], &b[body..]);
    sums.iter().sum()
}

/// `sums[l] += a[l]·b[l]` for the (at most [`DOT_LANES`]) values given: a chunk of a piece, or
/// its last `< DOT_LANES` values.
fn add_products<T: Stored>(sums: &mut [f64; DOT_LANES], a: &[T], b: &[f32]) {
    for (l, (x, y)) in a.iter().zip(b).enumerate() {
        sums[l] += x.widen() as f64 * *y as f64;
    }
}

/// [`dot_piece`] with AVX2: the eight partial sums are two registers of four f64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_piece_avx2<T: Stored>(a: &[T], b: &[f32]) -> f64 {
    use std::arch::x86_64::*;
    let body = a.len() - a.len() % DOT_LANES;
    let mut sums = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for (x, y) in a[..body]
        .chunks_exact(DOT_LANES)
        .zip(b[..body].chunks_exact(DOT_LANES))
    {
        // SAFETY: each chunk holds 8 values, what `load8` and an unaligned 256-bit load read;
        // the processor has AVX2, FMA and F16C (this function's features).
        sums =
            unsafe { avx2::add_products(T::load8(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()), sums) };
    }
    // SAFETY: as above.
    unsafe { avx2::finish(sums, &a[body..], &b[body..]) }
}

/// `max |vᵢ|` (0 for an empty `v`): how far a step along `v` moves the value that moves most.
pub(crate) fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64
}

/// `y ← y + alpha·x`, each value computed in f64 and rounded once to f32, in parallel pieces.
pub(crate) fn axpy<T: Stored>(alpha: f64, x: &[T], y: &mut [f32]) {
    axpy_with(Isa::detect().at_most_avx2(), alpha, x, y)
}

/// [`axpy`] with the build for `isa` (which the processor must run).
fn axpy_with<T: Stored>(isa: Isa, alpha: f64, x: &[T], y: &mut [f32]) {
    isa.assert_available("axpy");
    y.par_chunks_mut(PIECE)
        .zip(x.par_chunks(PIECE))
        .for_each(|(y, x)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `assert_available` above: the processor has AVX2, FMA and F16C.
            Isa::Avx2Fma | Isa::Avx512F => unsafe { axpy_piece_avx2(alpha, x, y) },
            _ => axpy_piece(alpha, x, y),
        });
}

/// One piece of [`axpy`].
fn axpy_piece<T: Stored>(alpha: f64, x: &[T], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = (*yi as f64 + alpha * xi.widen() as f64) as f32;
    }
}

/// [`axpy_piece`] with AVX2, eight values at a time (the multiply and the add apart, as there).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn axpy_piece_avx2<T: Stored>(alpha: f64, x: &[T], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let body = y.len() - y.len() % 8;
    let a = _mm256_set1_pd(alpha);
    for (yc, xc) in y[..body].chunks_exact_mut(8).zip(x[..body].chunks_exact(8)) {
        // SAFETY: each chunk holds 8 values, what `load8` and an unaligned 256-bit load or store
        // touch; the processor has AVX2, FMA and F16C (this function's features).
        unsafe {
            let new = avx2::axpy(a, T::load8(xc.as_ptr()), _mm256_loadu_ps(yc.as_ptr()));
            _mm256_storeu_ps(yc.as_mut_ptr(), new);
        }
    }
    axpy_piece(alpha, &x[body..], &mut y[body..]);
}

/// `y ← y + alpha·x`, then `Σ zᵢ yᵢ` of the new `y` — [`axpy`] and [`dot`] in one pass over
/// the vectors, with the same bits as the two calls one after the other. The two-loop recursion
/// pairs each pair's update with the next pair's dot product this way, so each of its loops
/// walks the history once instead of twice.
pub(crate) fn axpy_dot<T: Stored>(alpha: f64, x: &[T], y: &mut [f32], z: &[T]) -> f64 {
    axpy_dot_with(Isa::detect().at_most_avx2(), alpha, x, y, z)
}

/// [`axpy_dot`] with the build for `isa` (which the processor must run).
fn axpy_dot_with<T: Stored>(isa: Isa, alpha: f64, x: &[T], y: &mut [f32], z: &[T]) -> f64 {
    isa.assert_available("axpy_dot");
    let pieces: Vec<f64> = y
        .par_chunks_mut(PIECE)
        .zip(x.par_chunks(PIECE))
        .zip(z.par_chunks(PIECE))
        .map(|((y, x), z)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `assert_available` above: the processor has AVX2, FMA and F16C.
            Isa::Avx2Fma | Isa::Avx512F => unsafe { axpy_dot_piece_avx2(alpha, x, y, z) },
            _ => axpy_dot_piece(alpha, x, y, z),
        })
        .collect();
    pieces.iter().sum()
}

/// One piece of [`axpy_dot`]: eight values of `y` at a time updated and at once multiplied into
/// [`dot`]'s partial sums with `z`'s — the same operations in the same order as [`axpy_piece`]
/// then [`dot_piece`], but the two history vectors `x` and `z` are read side by side: one after
/// the other, each streamed from memory alone, they came about a fifth slower (BENCHMARKS.md).
fn axpy_dot_piece<T: Stored>(alpha: f64, x: &[T], y: &mut [f32], z: &[T]) -> f64 {
    let mut sums = [0.0f64; DOT_LANES];
    for ((yc, xc), zc) in y
        .chunks_mut(DOT_LANES)
        .zip(x.chunks(DOT_LANES))
        .zip(z.chunks(DOT_LANES))
    {
        axpy_piece(alpha, xc, yc);
        add_products(&mut sums, zc, yc);
    }
    sums.iter().sum()
}

/// [`axpy_dot_piece`] with AVX2: [`axpy_piece_avx2`]'s update and [`dot_piece_avx2`]'s sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn axpy_dot_piece_avx2<T: Stored>(alpha: f64, x: &[T], y: &mut [f32], z: &[T]) -> f64 {
    use std::arch::x86_64::*;
    let body = y.len() - y.len() % DOT_LANES;
    let a = _mm256_set1_pd(alpha);
    let mut sums = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for ((yc, xc), zc) in y[..body]
        .chunks_exact_mut(DOT_LANES)
        .zip(x[..body].chunks_exact(DOT_LANES))
        .zip(z[..body].chunks_exact(DOT_LANES))
    {
        // SAFETY: each chunk holds 8 values, what `load8` and an unaligned 256-bit load or store
        // touch; the processor has AVX2, FMA and F16C (this function's features).
        unsafe {
            let new = avx2::axpy(a, T::load8(xc.as_ptr()), _mm256_loadu_ps(yc.as_ptr()));
            _mm256_storeu_ps(yc.as_mut_ptr(), new);
            sums = avx2::add_products(T::load8(zc.as_ptr()), new, sums);
        }
    }
    axpy_piece(alpha, &x[body..], &mut y[body..]);
    // SAFETY: as above.
    unsafe { avx2::finish(sums, &z[body..], &y[body..]) }
}

/// The AVX2 builds' steps on eight values, shared by [`dot_piece_avx2`], [`axpy_piece_avx2`] and
/// [`axpy_dot_piece_avx2`]. Each is inlined into its caller and compiled with the caller's AVX2
/// and FMA features; each is `unsafe` because the processor must have them.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::DOT_LANES;
    use std::arch::x86_64::*;

    /// `y + a·x` for eight values, each product and sum in f64 and rounded once to f32.
    #[inline(always)]
    pub(super) unsafe fn axpy(a: __m256d, x: __m256, y: __m256) -> __m256 {
        let half = |x: __m128, y: __m128| {
            let p = _mm256_mul_pd(a, _mm256_cvtps_pd(x));
            _mm256_cvtpd_ps(_mm256_add_pd(_mm256_cvtps_pd(y), p))
        };
        let lo = half(_mm256_castps256_ps128(x), _mm256_castps256_ps128(y));
        let hi = half(_mm256_extractf128_ps::<1>(x), _mm256_extractf128_ps::<1>(y));
        _mm256_set_m128(hi, lo)
    }

    /// The eight products `x·y`, in f64, into the partial sums (lanes 0–3, 4–7): one fused
    /// multiply-add each, so one rounding, as the baseline's multiply then add (the product of
    /// two f32 is exact in f64).
    #[inline(always)]
    pub(super) unsafe fn add_products(
        x: __m256,
        y: __m256,
        (lo, hi): (__m256d, __m256d),
    ) -> (__m256d, __m256d) {
        let (xl, xh) = (_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
        let (yl, yh) = (_mm256_castps256_ps128(y), _mm256_extractf128_ps::<1>(y));
        (
            _mm256_fmadd_pd(_mm256_cvtps_pd(xl), _mm256_cvtps_pd(yl), lo),
            _mm256_fmadd_pd(_mm256_cvtps_pd(xh), _mm256_cvtps_pd(yh), hi),
        )
    }

    /// The piece's sum: the two registers' eight partial sums, plus the products of its last
    /// `< 8` values `a`, `b`, added in lane order.
    #[inline(always)]
    pub(super) unsafe fn finish<T: super::Stored>(
        (lo, hi): (__m256d, __m256d),
        a: &[T],
        b: &[f32],
    ) -> f64 {
        let mut sums = [0.0f64; DOT_LANES];
        // SAFETY: `sums` holds 8 f64, two 256-bit stores' worth.
        unsafe {
            _mm256_storeu_pd(sums.as_mut_ptr(), lo);
            _mm256_storeu_pd(sums.as_mut_ptr().add(4), hi);
        }
        super::add_products(&mut sums, a, b);
        sums.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several pieces and a short last one, with the vectors read stored as `T`: for every build
    /// this processor runs, the dot product equals the plain f64 sum to rounding and gives the
    /// same bits on 1 and 3 threads and as the baseline build; axpy equals the loop it replaces,
    /// bit for bit; axpy_dot equals axpy then dot.
    fn check<T: Stored>(to: impl Fn(f32) -> T) {
        let n = 3 * PIECE + 123;
        let a: Vec<T> = (0..n)
            .map(|i| to(((i * 7919) % 1000) as f32 / 997.0 - 0.5))
            .collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 991) as f32 / 991.0 - 0.3)
            .collect();
        let b_stored: Vec<T> = b.iter().map(|v| to(*v)).collect();
        let serial: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x.widen() as f64 * *y as f64)
            .sum();
        let want: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*y as f64 - 0.75 * x.widen() as f64) as f32)
            .collect();
        let on = |threads: usize, isa: Isa| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut y = b.clone();
                axpy_with(isa, -0.75, &a, &mut y);
                let mut fused = b.clone();
                let fused_dot = axpy_dot_with(isa, -0.75, &a, &mut fused, &b_stored);
                assert_eq!(fused, y, "axpy_dot's update");
                assert_eq!(
                    fused_dot.to_bits(),
                    dot_with(isa, &b_stored, &y).to_bits(),
                    "axpy_dot's dot"
                );
                (dot_with(isa, &a, &b), y)
            })
        };
        let (baseline, _) = on(1, Isa::Baseline);
        assert!(
            (baseline - serial).abs() <= 1e-12 * serial.abs(),
            "{baseline} vs {serial}"
        );
        for isa in Isa::available() {
            for threads in [1, 3] {
                let (d, y) = on(threads, isa);
                assert_eq!(
                    d.to_bits(),
                    baseline.to_bits(),
                    "{isa:?}, {threads} threads"
                );
                assert_eq!(y, want, "{isa:?}, {threads} threads");
            }
        }
    }

    #[test]
    fn dot_and_axpy_in_pieces_match_the_serial_loops_on_any_thread_count_and_build() {
        check(|v| v);
    }

    /// The same with the vectors read stored in half precision (widened by F16C in the AVX2
    /// build, by `half`'s conversion in the baseline one).
    #[test]
    fn the_same_holds_for_vectors_stored_in_half_precision() {
        check(f16::from_f32);
    }
}
