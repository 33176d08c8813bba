//! Result buffers zeroed part by part by the tasks that write them.
//!
//! A parallel kernel's result is written by many tasks, each to its own part. Allocating it
//! zeroed first ([`super::elementwise::zeroed`]) is a pass over all of it — 50 MB for conv1_1's
//! output at 512×384 — after which its lines have left the caches, so the kernel's own stores
//! fetch them from memory again. A [`Fresh`] buffer is left as the allocator gives it, and each
//! task zeroes its part ([`zero`]) right before writing it: the zeros and the values meet in the
//! cache, one trip to memory instead of two (BENCHMARKS.md). The zeros are still written, so
//! nothing uninitialised is ever read, and a value a kernel does not write stays 0.

use std::mem::MaybeUninit;

/// A vector of `len` floats being made by a parallel kernel: split [`Fresh::parts`] among the
/// tasks, have each task pass its parts through [`zero`] (or write every value of them), then
/// take the vector with [`Fresh::into_written`].
pub struct Fresh {
    data: Vec<f32>,
    len: usize,
}

impl Fresh {
    /// Room for `len` floats, not yet initialised.
    pub fn new(len: usize) -> Fresh {
        Fresh {
            data: Vec::with_capacity(len),
            len,
        }
    }

    /// The `len` values, not yet initialised, to be split among the tasks.
    pub fn parts(&mut self) -> &mut [MaybeUninit<f32>] {
        &mut self.data.spare_capacity_mut()[..self.len]
    }

    /// The vector, once every value of [`Fresh::parts`] has been written.
    ///
    /// # Safety
    /// Every one of the `len` values must have been written (by [`zero`] or otherwise).
    pub unsafe fn into_written(mut self) -> Vec<f32> {
        // SAFETY: the caller's promise: all `len ≤ capacity` values are initialised.
        unsafe { self.data.set_len(self.len) };
        self.data
    }
}

/// Zeroes a task's part of a [`Fresh`] buffer and hands it back as values to write.
pub fn zero(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every value of `part` was just written, and `MaybeUninit<f32>` has the layout of
    // `f32`.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}
