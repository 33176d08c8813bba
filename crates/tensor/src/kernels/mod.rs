//! The numeric kernels, apart from the autodiff graph: plain functions on flat `f32` slices in
//! NCHW order. Each fast kernel has a naive twin in [`mod@reference`] that the tests compare against.

pub mod conv;
pub mod elementwise;
pub mod fresh;
pub mod gemm;
pub mod gram;
pub mod isa;
pub mod matmul;
pub mod pool;
pub(crate) mod prefetch;
pub mod reference;
pub mod scratch;
