//! Parallel dense products built on [`gemm`]: a general matrix product and the Gram product
//! `F·Fᵀ`. Work is split into blocks whose size depends only on the shapes, so results do not
//! depend on the thread count.

use super::gemm::{gemm, MatMut, MatRef};
use rayon::prelude::*;

/// Output rows per rayon task in [`matmul`].
const ROW_BLOCK: usize = 16;
/// Columns of `F` per rayon task in [`gram`] (each task makes a partial `C×C` sum).
const GRAM_COL_BLOCK: usize = 8192;

/// `A·B` as a new row-major `m×n` matrix, for any strides of `A` (`m×k`) and `B` (`k×n`).
/// Rows of the result are computed in blocks of 16, in parallel.
pub fn matmul(a: MatRef, b: MatRef) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    let (m, n) = (a.rows, b.cols);
    let mut c = vec![0.0; m * n];
    if n == 0 {
        return c;
    }
    c.par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .for_each(|(blk, c_rows)| {
            let r0 = blk * ROW_BLOCK;
            let rows = c_rows.len() / n;
            let a_rows = MatRef {
                data: &a.data[r0 * a.row_stride..],
                rows,
                ..a
            };
            // C[r0..r0+rows, :] (rows × n) = A[r0..r0+rows, :] (rows × k) · B (k × n).
            gemm(1.0, a_rows, b, 0.0, MatMut::row_major(c_rows, rows, n));
        });
    c
}

/// The unnormalised Gram matrix `F·Fᵀ` of a row-major `F: c×m` (one row per channel), `c×c`.
/// The long `m` (pixels) dimension is split into fixed blocks whose partial products are summed
/// in block order.
pub fn gram(f: &[f32], c: usize, m: usize) -> Vec<f32> {
    let fr = MatRef::row_major(f, c, m);
    let partials: Vec<Vec<f32>> = (0..m.div_ceil(GRAM_COL_BLOCK))
        .into_par_iter()
        .map(|blk| {
            let j0 = blk * GRAM_COL_BLOCK;
            let cols = GRAM_COL_BLOCK.min(m - j0);
            let fb = MatRef {
                data: &f[j0..],
                cols,
                ..fr
            };
            let mut g = vec![0.0; c * c];
            // G_blk (c × c) = F[:, j0..j0+cols] (c × cols) · F[:, j0..j0+cols]ᵀ (cols × c).
            gemm(1.0, fb, fb.t(), 0.0, MatMut::row_major(&mut g, c, c));
            g
        })
        .collect();
    let mut g = vec![0.0; c * c];
    for part in &partials {
        for (d, s) in g.iter_mut().zip(part) {
            *d += *s;
        }
    }
    g
}
