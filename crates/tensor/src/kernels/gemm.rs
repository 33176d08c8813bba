//! The one GEMM entry point: `C = alpha·A·B + beta·C` on strided f32 matrices.
//!
//! Every matrix product in the crate goes through [`gemm()`], which hands it to one of two
//! BLIS-style packed GEMM libraries, the same for the whole process:
//!
//! - `matrixmultiply`: AVX-512F, AVX2 + FMA, AVX or SSE2 micro-kernels, picked at run time (the
//!   AVX-512F ones only exist with its `avx512` feature, which the workspace turns on and a test
//!   checks);
//! - the `gemm` crate: its own AVX-512F (compiled with its `x86-v4` feature) or AVX2 + FMA
//!   micro-kernels, picked at run time.
//!
//! Which one runs is decided by measurement, per kind of processor
//! ([`Backend::for_this_processor`]; BENCHMARKS.md, "GEMM backends"): whole evaluations, the two
//! backends run alternately, 2 threads.
//!
//! - **With AVX-512F, the `gemm` crate**: on an AMD EPYC (Zen 5) a 512×384 evaluation took 414
//!   against 477 ms, every convolution faster (conv4_2 26 against 37 ms, conv5_1 7.5 against
//!   12.6); against PyTorch 0.54× its time instead of 0.61×.
//! - **Without it, `matrixmultiply`**: on an AMD EPYC (Zen 3, AVX2 + FMA) the `gemm` crate was
//!   12% slower (512×384: 1597 against 1422 ms): timed as a band runs them, 36 different filter
//!   matrices in turn, it loses on the input gradient's products, which read those matrices
//!   transposed (conv4_2: 38 against 60 GFLOP/s).
//!
//! `NST_GEMM` ([`BACKEND_VARIABLE`]) overrides the choice, for measuring one backend against the
//! other on a new processor (`NST_GEMM=gemm nst bench …` against `NST_GEMM=matrixmultiply nst
//! bench …`) and for running the tests on each.
//!
//! Both run single-threaded on purpose: parallelism lives one level up, in rayon tasks over
//! independent tiles, so no GEMM thread pool nests inside rayon's, and each task's product (so
//! every result) is the same for any thread count. The two backends are not bit-identical to each
//! other; a process uses one.

use super::fresh::Fresh;
use super::isa::Isa;
use std::sync::OnceLock;

/// A GEMM library the products can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `matrixmultiply::sgemm`, the default without AVX-512F.
    MatrixMultiply,
    /// `gemm::gemm` (the `gemm` crate), the default with AVX-512F.
    GemmCrate,
}

impl Backend {
    /// Both backends, for tests and benchmarks that compare them.
    pub const ALL: [Backend; 2] = [Backend::MatrixMultiply, Backend::GemmCrate];

    /// The backend's name, as [`BACKEND_VARIABLE`] takes it and `nst bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::MatrixMultiply => "matrixmultiply",
            Backend::GemmCrate => "gemm",
        }
    }

    /// The faster backend on this processor, as measured (see the module's documentation): the
    /// `gemm` crate where the processor has AVX-512F, `matrixmultiply` otherwise.
    pub fn for_this_processor() -> Backend {
        if Isa::detect() == Isa::Avx512F {
            Backend::GemmCrate
        } else {
            Backend::MatrixMultiply
        }
    }

    /// The backend called `name` (see [`Backend::name`]), if any.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The environment variable that overrides the backend: `NST_GEMM=gemm` or
/// `NST_GEMM=matrixmultiply` (unset: [`Backend::for_this_processor`]). For measuring one backend
/// against the other on a given processor (`NST_GEMM=gemm nst bench …`), for running the tests on
/// each, and for users whose processor measures faster with the other one.
pub const BACKEND_VARIABLE: &str = "NST_GEMM";

/// The backend [`BACKEND_VARIABLE`] asks for: `Ok(None)` when it is unset or empty, an error
/// naming the accepted values when it names no backend. The CLI checks it this way at start-up,
/// so that a typo is an error message rather than the panic in [`backend`].
pub fn backend_from_env() -> Result<Option<Backend>, String> {
    let value = std::env::var(BACKEND_VARIABLE).unwrap_or_default();
    if value.is_empty() {
        return Ok(None);
    }
    Backend::from_name(&value).map(Some).ok_or_else(|| {
        let names: Vec<String> = Backend::ALL.map(|b| format!("{:?}", b.name())).to_vec();
        format!(
            "{BACKEND_VARIABLE}={value:?} names no GEMM backend; use {}, or unset it",
            names.join(" or ")
        )
    })
}

/// The backend [`gemm()`] uses: the one [`BACKEND_VARIABLE`] names, else
/// [`Backend::for_this_processor`], decided at the first product and kept for the process (the
/// two backends' results differ in their last bits, and a run's must not depend on when it
/// looked).
///
/// Panics if [`BACKEND_VARIABLE`] is set to something else than a backend's name.
pub fn backend() -> Backend {
    static CHOSEN: OnceLock<Backend> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        backend_from_env()
            .unwrap_or_else(|message| panic!("{message}"))
            .unwrap_or_else(Backend::for_this_processor)
    })
}

/// The micro-kernels both GEMM libraries pick on this processor, as [`Isa::detect`] names the
/// level (`"AVX-512F"`, `"AVX2+FMA"` or `"baseline"`: SSE2 or other architectures). Both are
/// built with their AVX-512F kernels (`matrixmultiply`'s `avx512` feature, the `gemm` crate's
/// `x86-v4`; a test checks the features) and choose the widest the processor has at run time;
/// `nst bench` reports it.
pub fn kernel_level() -> &'static str {
    Isa::detect().name()
}

/// A read-only strided view of an `rows × cols` matrix: element `(i, j)` is at
/// `data[i·row_stride + j·col_stride]`. Transposes are just swapped strides.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose: the same storage read with swapped strides.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// The largest index touched, plus one (0 for an empty matrix).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// A mutable strided view of an `rows × cols` matrix (see [`MatRef`]).
#[derive(Debug)]
pub struct MatMut<'a> {
    /// Backing storage.
    pub data: &'a mut [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }
}

/// `C ← alpha·A·B + beta·C`, with `A: m×k`, `B: k×n`, `C: m×n`; `beta = 0` overwrites `C`
/// (its old contents, even NaN, are ignored).
///
/// Panics if the shapes disagree or a view's strides reach past its slice: these are checked here
/// so that the `unsafe` call below can rely on them.
#[track_caller]
pub fn gemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: MatMut) {
    gemm_with(backend(), alpha, a, b, beta, c);
}

/// [`gemm()`] on the given backend rather than the process's.
#[track_caller]
pub fn gemm_with(backend: Backend, alpha: f32, a: MatRef, b: MatRef, beta: f32, c: MatMut) {
    check_shapes(&a, &b, &c);
    if c.rows == 0 || c.cols == 0 {
        return;
    }
    // SAFETY: `check_shapes` checked the shapes and that every index of each view is inside its
    // slice; `c` is a unique borrow, so it aliases neither `a` nor `b`.
    unsafe {
        let strides = (c.row_stride, c.col_stride);
        gemm_raw(backend, alpha, a, b, beta, c.data.as_mut_ptr(), strides)
    }
}

/// `alpha·A·B` as a new row-major `m×n` matrix, by [`gemm()`] with the columns of `C` (and of
/// `B`) cut into blocks of `block` columns, one rayon task each (each block's product
/// single-threaded, as always). For wide products — a Gram backward's `S·F`, 64×64 times
/// 64×196608 at 512×384 — this writes each block straight into `C`: every task packs only its
/// own slice of `B`, and no task's result passes through a scratch tile. The blocks depend on
/// `block` alone, and each column's sums are the same whichever task computes them, so the
/// result does not depend on the thread count.
///
/// `C` is a [`Fresh`] buffer the product goes into without being zeroed first: with `beta = 0`
/// both backends write every element and read none (`matrixmultiply`: "if β is zero, then C
/// does not need to be initialized"; the `gemm` crate reads its destination only when told to,
/// which it is only for `beta ≠ 0`). Zeroing 50 MB first (the Gram backward's result at
/// relu1_1, 512×384) cost one more pass over it: 2.3 ms of a 21 ms backward (BENCHMARKS.md).
#[track_caller]
pub fn gemm_column_blocks(alpha: f32, a: MatRef, b: MatRef, block: usize) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(block > 0, "gemm_column_blocks: empty blocks");
    let (m, n) = (a.rows, b.cols);
    check_operands(&a, &b, m, n);
    if a.cols == 0 {
        // No products to sum: zeros, which a backend would not be asked to write.
        return vec![0.0; m * n];
    }
    let mut c = Fresh::new(m * n);
    if m > 0 && n > 0 {
        let backend = backend();
        // The raw pointer crosses to the tasks as an address: each task writes only its own
        // columns.
        let c_addr = c.parts().as_mut_ptr() as usize;
        (0..n.div_ceil(block)).into_par_iter().for_each(|k| {
            let j0 = k * block;
            let b_cols = MatRef {
                data: &b.data[j0 * b.col_stride..],
                cols: block.min(n - j0),
                ..b
            };
            // SAFETY: `check_operands` checked every index of `A` and `B`; `C` is the `m·n`
            // values of `c`, row-major, owned here and aliasing neither. Block `k` reads `B` and
            // writes `C` at columns `j0..j0 + cols` only, and blocks are disjoint, so no element
            // is written by two tasks.
            unsafe {
                let c_ptr = (c_addr as *mut f32).add(j0);
                gemm_raw(backend, alpha, a, b_cols, 0.0, c_ptr, (n, 1));
            }
        });
    }
    // SAFETY: with `beta = 0` the blocks wrote every element of `C` (see above).
    unsafe { c.into_written() }
}

/// Panics unless the shapes agree and every index of each view,
/// `i·row_stride + j·col_stride` for `i < rows`, `j < cols`, is inside its slice: what the
/// `unsafe` calls of [`gemm_raw`] rely on.
#[track_caller]
fn check_shapes(a: &MatRef, b: &MatRef, c: &MatMut) {
    check_operands(a, b, c.rows, c.cols);
    let c_extent = if c.rows == 0 || c.cols == 0 {
        0
    } else {
        (c.rows - 1) * c.row_stride + (c.cols - 1) * c.col_stride + 1
    };
    assert!(
        c_extent <= c.data.len(),
        "gemm: a strided view reaches past its slice"
    );
}

/// [`check_shapes`] for `A` and `B`, against a `C` of `rows × cols`.
#[track_caller]
fn check_operands(a: &MatRef, b: &MatRef, rows: usize, cols: usize) {
    assert!(
        a.cols == b.rows && a.rows == rows && b.cols == cols,
        "gemm: A is {}×{}, B is {}×{}, C is {}×{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        rows,
        cols
    );
    assert!(
        a.extent() <= a.data.len() && b.extent() <= b.data.len(),
        "gemm: a strided view reaches past its slice"
    );
}

/// The backend's call for `C ← alpha·A·B + beta·C`, `C` (`a.rows × b.cols`, with the row and
/// column strides `c_strides`) starting at `c`.
///
/// # Safety
/// The shapes must agree, every index of `a` and `b` be inside their slices, every element of
/// `C` be valid to write and written by no one else during the call, and `C` alias neither
/// `a` nor `b`; rows and columns must be non-zero. Strides fit in `isize` because they index
/// allocations that exist.
unsafe fn gemm_raw(
    backend: Backend,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: *mut f32,
    c_strides: (usize, usize),
) {
    match backend {
        Backend::MatrixMultiply => unsafe {
            matrixmultiply::sgemm(
                a.rows,
                a.cols,
                b.cols,
                alpha,
                a.data.as_ptr(),
                a.row_stride as isize,
                a.col_stride as isize,
                b.data.as_ptr(),
                b.row_stride as isize,
                b.col_stride as isize,
                beta,
                c,
                c_strides.0 as isize,
                c_strides.1 as isize,
            );
        },
        // The gemm crate computes `dst ← alpha·dst + beta·lhs·rhs` (its names for our beta and
        // alpha are swapped), reading `dst` only when asked to: `beta = 0` must not read a NaN.
        Backend::GemmCrate => unsafe {
            gemm::gemm(
                a.rows,
                b.cols,
                a.cols,
                c,
                c_strides.1 as isize,
                c_strides.0 as isize,
                beta != 0.0,
                a.data.as_ptr(),
                a.col_stride as isize,
                a.row_stride as isize,
                b.data.as_ptr(),
                b.col_stride as isize,
                b.row_stride as isize,
                beta,
                alpha,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        },
    }
}
