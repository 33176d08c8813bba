//! The one GEMM entry point: `C = alpha·A·B + beta·C` on strided f32 matrices.
//!
//! Every matrix product in the crate goes through [`gemm`], which wraps
//! `matrixmultiply::sgemm` (a BLIS-style packed GEMM with AVX2/FMA micro-kernels chosen at run
//! time). It is single-threaded on purpose: parallelism lives one level up, in rayon tasks over
//! independent tiles, so the GEMM's own thread pool never nests inside rayon's.

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
    assert!(
        a.cols == b.rows && a.rows == c.rows && b.cols == c.cols,
        "gemm: A is {}×{}, B is {}×{}, C is {}×{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    let c_extent = if c.rows == 0 || c.cols == 0 {
        0
    } else {
        (c.rows - 1) * c.row_stride + (c.cols - 1) * c.col_stride + 1
    };
    assert!(
        a.extent() <= a.data.len() && b.extent() <= b.data.len() && c_extent <= c.data.len(),
        "gemm: a strided view reaches past its slice"
    );
    if c.rows == 0 || c.cols == 0 {
        return;
    }
    // SAFETY: the shapes agree (asserted above) and every index sgemm reads or writes,
    // i·row_stride + j·col_stride for i < rows, j < cols, is below the extent checked against
    // each slice's length. `c` is a unique borrow, so it aliases neither `a` nor `b`. Strides fit
    // in isize because they index slices that exist.
    unsafe {
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
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
        );
    }
}
