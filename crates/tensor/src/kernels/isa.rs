//! Which SIMD instruction set the hand-vectorised kernels run with, chosen at run time.
//!
//! The crate is compiled for the baseline x86-64 (SSE2) so that one binary runs on every server;
//! the kernels that matter are compiled again with wider instruction sets enabled (through
//! `#[target_feature]`) and picked when the processor has them: the Gram product and the direct
//! convolution up to AVX-512F, the Winograd transforms up to AVX2 + FMA (a 16-lane AVX-512 build
//! of the transforms measured 1.6% faster on a Zen 5, not worth a third path: BENCHMARKS.md).
//! The GEMM libraries do the same on their own, up to AVX-512F; the optimizers' vector
//! operations (`nst-transfer`) use these levels too, up to AVX2.

use std::sync::OnceLock;

/// An instruction-set level a kernel can be compiled for. Each level includes the ones before
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// What every x86-64 (or other) processor has: SSE2 on x86-64.
    Baseline,
    /// AVX2 and FMA (Intel Haswell, AMD Zen and later): 8 f32 lanes per register. Also F16C,
    /// the conversions between f32 and half precision, which every processor with AVX2 has
    /// (the L-BFGS history in `nst-transfer` is stored in half precision).
    Avx2Fma,
    /// AVX-512F on top of AVX2 and FMA (Intel Skylake-SP, AMD Zen 4 and later): 16 f32 lanes
    /// per register, 32 registers.
    Avx512F,
}

impl Isa {
    /// The best level this processor supports (detected once).
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            *Isa::available()
                .last()
                .expect("the baseline is always there")
        })
    }

    /// The level's name, as `nst bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2Fma => "AVX2+FMA",
            Isa::Avx512F => "AVX-512F",
        }
    }

    /// Every level this processor can run, the baseline first (tests run each).
    pub fn available() -> Vec<Isa> {
        let mut levels = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            levels.push(Isa::Avx2Fma);
            if std::is_x86_feature_detected!("avx512f") {
                levels.push(Isa::Avx512F);
            }
        }
        levels
    }

    /// Panics (naming `kernel`) unless this processor can run `self`. Every kernel's `_with`
    /// entry point checks it first: its builds for wider levels are `unsafe` to call without the
    /// instructions, and `Isa` is a plain enum any caller can name. Since each level includes the
    /// ones before it, the levels this processor runs are those up to [`Isa::detect`]'s.
    #[track_caller]
    pub fn assert_available(self, kernel: &str) {
        assert!(
            self <= Isa::detect(),
            "{kernel}: {self:?} is not available here"
        );
    }

    /// The level a kernel whose widest build is AVX2 + FMA runs at: `self`, or
    /// [`Isa::Avx2Fma`] on an AVX-512 processor (the Winograd transforms).
    pub fn at_most_avx2(self) -> Isa {
        self.min(Isa::Avx2Fma)
    }
}
