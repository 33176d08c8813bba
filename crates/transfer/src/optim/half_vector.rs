//! An image-sized vector stored in half precision, as L-BFGS keeps its history of pairs.
//!
//! **Why.** The two-loop recursion reads every stored pair `(sᵢ, yᵢ)` twice per step; with the
//! classic 100 pairs at 512×384 that is 944 MB a step in `f32`, read at the memory's speed — 10%
//! of a default run on an Intel Xeon, more than all the network's work outside its convolutions
//! and Gram matrices (BENCHMARKS.md). The history is also the largest thing a print-size run
//! keeps: 9.4 GiB for 100 pairs at 2048×2048 in `f32`. Half precision halves both.
//!
//! **How.** Each value is stored as IEEE 754 binary16 ([`half::f16`](struct@f16): 11
//! significant bits) times one power-of-two `scale` per vector, chosen so that the largest
//! magnitude lands in `[2¹⁴, 2¹⁵)`: f16's normal range then covers every value down to 2⁻²⁸ of
//! the largest at full precision, and none overflows (f16 reaches 65504). Scaling by a power of
//! two is exact, so the one rounding is to the nearest binary16 value: a relative error of at
//! most 2⁻¹¹ ≈ 4.9e-4 per value.
//!
//! **Why the method stays L-BFGS.** A pair is rounded once, when it is stored, and from then on
//! only the rounded vectors `s̃ = scale·ŝ`, `ỹ` are used — `ρ = 1/ỹᵀs̃` and the scaling `γ` too.
//! So the recursion applies the exact L-BFGS inverse-Hessian update of the pairs `(s̃ᵢ, ỹᵢ)`,
//! which is positive definite whenever every `ỹᵢᵀs̃ᵢ > 0` (checked as for unrounded pairs): the
//! directions are descent directions, only the curvature information is that of steps rounded
//! to 11 significant bits. Measured over 200 evaluations at 512 px, the final losses are within
//! 0.2% of the `f32` history's, inside the ±0.3% any change of rounding moves a run by
//! (BENCHMARKS.md).

use super::vector::{axpy, axpy_dot, dot, PIECE};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Where a vector's largest magnitude lands once divided by its scale: `[2^(TOP−1), 2^TOP)`.
const TOP: i32 = 15;

/// `scale · values` (see the module documentation).
pub(crate) struct HalfVector {
    /// The values divided by `scale`, rounded to the nearest binary16.
    values: Vec<f16>,
    /// A power of two (1 for a zero vector).
    scale: f64,
}

impl HalfVector {
    /// `v` rounded to half precision with its own scale; `None` if any value is not finite
    /// (a pair from such a step is not kept).
    pub(crate) fn round(v: &[f32]) -> Option<HalfVector> {
        // The largest magnitude, or infinity if a value is not finite.
        let largest = v
            .par_chunks(PIECE)
            .map(|piece| {
                piece.iter().fold(0.0f32, |m, x| {
                    if x.is_finite() {
                        m.max(x.abs())
                    } else {
                        f32::INFINITY
                    }
                })
            })
            .reduce(|| 0.0, f32::max);
        if !largest.is_finite() {
            return None;
        }
        // largest ∈ [2^e, 2^(e+1)), read from its exponent as an f64 (where every f32 is normal).
        let scale = if largest == 0.0 {
            1.0
        } else {
            let e = (((largest as f64).to_bits() >> 52) & 0x7ff) as i32 - 1023;
            2f64.powi(e + 1 - TOP)
        };
        let inverse = 1.0 / scale;
        let mut values = vec![f16::ZERO; v.len()];
        values
            .par_chunks_mut(PIECE)
            .zip(v.par_chunks(PIECE))
            .for_each(|(h, x)| {
                // Scaled a block at a time (exact: a power of two, and the results fit an f32),
                // then rounded to binary16 by `half`'s slice conversion (F16C where there is one).
                let mut scaled = [0.0f32; 1024];
                for (h, x) in h.chunks_mut(scaled.len()).zip(x.chunks(scaled.len())) {
                    let scaled = &mut scaled[..x.len()];
                    for (s, x) in scaled.iter_mut().zip(x) {
                        *s = (*x as f64 * inverse) as f32;
                    }
                    h.convert_from_f32_slice(scaled);
                }
            });
        Some(HalfVector { values, scale })
    }

    /// The values this vector stands for, `scale·v̂ᵢ`, as `f32` (exact unless they are below
    /// f32's normal range).
    pub(crate) fn widen(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.values.len()];
        axpy(self.scale, &self.values, &mut out);
        out
    }

    /// `Σ selfᵢ·bᵢ`, accumulated in f64 ([`dot`]).
    pub(crate) fn dot(&self, b: &[f32]) -> f64 {
        self.scale * dot(&self.values, b)
    }

    /// `y ← y + alpha·self` ([`axpy`]).
    pub(crate) fn add_to(&self, alpha: f64, y: &mut [f32]) {
        axpy(alpha * self.scale, &self.values, y);
    }

    /// `y ← y + alpha·self`, then `Σ zᵢ·yᵢ` of the new `y`, in one pass ([`axpy_dot`]).
    pub(crate) fn add_to_then_dot(&self, alpha: f64, y: &mut [f32], z: &HalfVector) -> f64 {
        z.scale * axpy_dot(alpha * self.scale, &self.values, y, &z.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values spread over many magnitudes, the largest about 1.9e3: each rounds to within 2⁻¹¹
    /// of itself (relative) down to 2⁻²⁸ of the largest, zero stays zero, the largest does not
    /// overflow, and the operations equal the same operations on the widened values.
    #[test]
    fn rounding_keeps_eleven_bits_and_the_operations_use_the_rounded_values() {
        let n: usize = 40_000;
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let m = ((i * 7919) % 1000) as f32 / 999.0 - 0.5;
                let e = (i % 24) as i32 - 12;
                if i % 997 == 0 {
                    0.0
                } else {
                    m * 2f32.powi(e) * 3.7e3 / 2048.0
                }
            })
            .collect();
        let h = HalfVector::round(&v).unwrap();
        let w = h.widen();
        let largest = crate::optim::vector::max_abs(&v);
        let mut exact_zeros = 0;
        for (a, b) in v.iter().zip(&w) {
            assert!(b.is_finite());
            if *a == 0.0 {
                assert_eq!(*b, 0.0);
                exact_zeros += 1;
            } else if (a.abs() as f64) >= largest * 2f64.powi(-28) {
                let rel = ((a - b) / a).abs();
                assert!(rel <= 2f32.powi(-11), "{a} rounded to {b}: {rel}");
            }
        }
        assert!(exact_zeros > 0);
        assert!(w.iter().zip(&v).any(|(a, b)| a != b), "nothing was rounded");
        let b: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
        assert_eq!(h.dot(&b).to_bits(), dot(&w, &b).to_bits());
        let (mut y1, mut y2) = (b.clone(), b.clone());
        h.add_to(-0.3, &mut y1);
        axpy(-0.3, &w, &mut y2);
        assert_eq!(y1, y2);
        let z = HalfVector::round(&b).unwrap();
        let (mut y1, mut y2) = (b.clone(), b.clone());
        let d1 = h.add_to_then_dot(0.7, &mut y1, &z);
        let d2 = axpy_dot(0.7, &w, &mut y2, &z.widen());
        assert_eq!(y1, y2);
        assert_eq!(d1.to_bits(), d2.to_bits());
    }

    /// A vector with an infinite or NaN value is not stored; a zero vector is.
    #[test]
    fn non_finite_vectors_are_refused() {
        assert!(HalfVector::round(&[1.0, f32::INFINITY]).is_none());
        assert!(HalfVector::round(&[f32::NAN, 1.0]).is_none());
        assert_eq!(HalfVector::round(&[0.0; 5]).unwrap().widen(), vec![0.0; 5]);
    }
}
