//! Reusable per-thread work buffers for kernels that fill them completely.
//!
//! A Winograd band needs two large transient buffers (the transformed input and the products),
//! once per band per layer per evaluation. Allocating them zeroed costs a `memset` of every
//! byte (8% of an evaluation, measured with `perf`) for values that are overwritten anyway.
//! [`take`] hands out a buffer this thread used before — its contents are stale, so callers
//! must write every element before reading it — and [`give`] returns it.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread; more are dropped when given back.
const KEEP: usize = 4;

/// A buffer of `len` floats with **unspecified contents** (zeros or stale values from an earlier
/// use on this thread). Return it with [`give`] when done.
pub fn take(len: usize) -> Vec<f32> {
    let reused = POOL.with(|p| {
        let mut pool = p.borrow_mut();
        // The smallest buffer that is large enough, else the largest (it will grow).
        let fit = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity())
            .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
        fit.map(|i| pool.swap_remove(i))
    });
    let mut v = reused.unwrap_or_default();
    v.truncate(len);
    v.resize(len, 0.0);
    v
}

/// Returns a buffer from [`take`] to this thread's pool.
pub fn give(v: Vec<f32>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < KEEP {
            pool.push(v);
        }
    });
}
