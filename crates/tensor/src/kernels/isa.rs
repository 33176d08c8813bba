//! Which SIMD instruction set the hand-vectorised kernels run with, chosen at run time.
//!
//! The crate is compiled for the baseline x86-64 (SSE2) so that one binary runs on every server;
//! the kernels that matter are compiled a second time with AVX2 + FMA enabled (through
//! `#[target_feature]`) and picked when the processor has them. The GEMM (`matrixmultiply`) does
//! the same on its own, up to AVX-512.

use std::sync::OnceLock;

/// An instruction-set level a kernel can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// What every x86-64 (or other) processor has: SSE2 on x86-64.
    Baseline,
    /// AVX2 and FMA (Intel Haswell, AMD Zen and later): 8 f32 lanes per register.
    Avx2Fma,
}

impl Isa {
    /// The best level this processor supports (detected once).
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            if Isa::available().contains(&Isa::Avx2Fma) {
                Isa::Avx2Fma
            } else {
                Isa::Baseline
            }
        })
    }

    /// The level's name, as `nst bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2Fma => "AVX2+FMA",
        }
    }

    /// Every level this processor can run, the baseline first (tests run each).
    pub fn available() -> Vec<Isa> {
        let mut levels = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            levels.push(Isa::Avx2Fma);
        }
        levels
    }
}
