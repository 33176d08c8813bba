//! # nst-tensor — the engine
//!
//! A small reverse-mode automatic differentiation library on f32 tensors in NCHW layout, with
//! exactly the operations neural style transfer needs, made fast where it matters.
//!
//! - [`Graph`] is the tape; [`Var`] a value on it. Operations are methods on `Var`
//!   (`x.conv2d(w, Some(b), 1).relu().max_pool2()`), each checked, computed and recorded.
//! - [`Graph::backward`] runs reverse mode once from a scalar and returns [`Gradients`].
//! - Derivatives: all in one `match`, in `backward.rs`.
//! - Kernels ([`kernels`]): convolution by Winograd F(4×4, 3×3), direct summation or im2col over
//!   a packed SGEMM (`matrixmultiply` or the `gemm` crate; one chooser, `kernels::conv`),
//!   pooling, the Gram product by symmetric dot products (`kernels::gram`), each with a naive
//!   twin for the tests. Parallel with rayon over fixed tiles.
//!
//! Error policy: a shape mismatch between ops is a programming error and panics at the op's entry
//! with the op's name and the shapes; user input is validated by the crates above and returned
//! as `Result`s. See `ARCHITECTURE.md`.
//!
//! ```
//! use nst_tensor::Graph;
//! use ndarray::{ArrayD, IxDyn};
//! let g = Graph::new();
//! let x = g.param(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, -3.0]).unwrap());
//! let loss = x.square().sum(); // Σ x²
//! let grads = g.backward(loss);
//! assert_eq!(grads.get(x).unwrap().as_slice().unwrap(), &[2.0, -6.0]); // 2x
//! ```

mod allocator;
mod array;
mod backward;
mod filter_cache;
mod graph;
pub mod kernels;
mod ops;

pub use allocator::keep_freed_memory;
pub use graph::{Gradients, Graph, OpTiming, Var};
pub use ndarray;
pub use ops::Fused;
