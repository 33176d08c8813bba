//! The parallel general matrix product built on [`gemm()`] (the Gram product has its own
//! kernel, [`super::gram`]). Work is split into blocks whose size depends only on the shapes, so
//! results do not depend on the thread count.

use super::fresh::{self, Fresh};
use super::gemm::{gemm, gemm_column_blocks, MatMut, MatRef};
use rayon::prelude::*;

/// Output rows per rayon task in [`matmul`] (tall products).
const ROW_BLOCK: usize = 16;
/// Output columns per rayon task in [`matmul`] (wide products), at most.
const COL_BLOCK: usize = 4096;
/// Column blocks are made smaller (down to [`MIN_COL_BLOCK`]) until there are this many tasks:
/// the deep layers' maps are short (relu4_1: 3072 pixels at 512×384), and one block would run
/// on one core.
const MIN_COL_TASKS: usize = 8;
/// The narrowest column block: below this the GEMM's packing costs more than it saves.
const MIN_COL_BLOCK: usize = 256;

/// The width of the column blocks that split `n` columns: at most `max`, and narrow enough for
/// [`MIN_COL_TASKS`] blocks when `n` allows (a function of the shape alone).
fn col_block(n: usize, max: usize) -> usize {
    n.div_ceil(MIN_COL_TASKS).clamp(MIN_COL_BLOCK, max)
}

/// `A·B` as a new row-major `m×n` matrix, for any strides of `A` (`m×k`) and `B` (`k×n`).
///
/// The work is split along the longer side of `C`: blocks of 16 rows, or — for wide products
/// like a Gram backward's `S·F` (64×64 times 64×196608) — blocks of up to 4096 columns, each
/// written straight into `C` ([`gemm_column_blocks`]), so that each task packs only its own
/// slice of `B` instead of all of it. Either way `C` is never zeroed in a pass of its own: the
/// column blocks overwrite fresh memory, and each row block is zeroed by its task just before
/// the GEMM writes it ([`fresh`]).
pub fn matmul(a: MatRef, b: MatRef) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    let (m, n) = (a.rows, b.cols);
    if n > m {
        return gemm_column_blocks(1.0, a, b, col_block(n, COL_BLOCK));
    }
    let mut c = Fresh::new(m * n);
    if n > 0 {
        c.parts()
            .par_chunks_mut(ROW_BLOCK * n)
            .enumerate()
            .for_each(|(blk, part)| {
                let c_rows = fresh::zero(part);
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
    }
    // SAFETY: the row blocks cover all `m·n` values (none when `n = 0`), each zeroed by its task.
    unsafe { c.into_written() }
}
