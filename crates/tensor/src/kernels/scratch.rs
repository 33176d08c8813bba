//! Reusable per-thread work buffers for kernels that fill them completely.
//!
//! A Winograd band needs two large transient buffers (the transformed input and the products),
//! once per band per layer per evaluation. Allocating them zeroed costs a `memset` of every
//! byte (8% of an evaluation, measured with `perf`) for values that are overwritten anyway.
//! [`take`] hands out a buffer this thread used before — its contents are stale, so callers
//! must write every element before reading it — and [`give`] returns it.
//!
//! A buffer remembers the most values it ever held, all of them initialised: a request for
//! fewer shows only the first ones, and a later request for more finds the rest still there.
//! Only values never handed out before are zeroed — once — so buffers passed between layers of
//! different sizes (a band's transformed input, then a smaller one, then a larger one) are not
//! zeroed again and again (that `memset` had been ~0.5% of `nst bench`'s samples, BENCHMARKS.md).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread; more are dropped when given back.
const KEEP: usize = 4;

/// A buffer from [`take`]: its `len` values as a slice, with **unspecified contents**.
pub struct Buffer {
    /// Every value the buffer has held, all initialised; the first `len` are this use's.
    data: Vec<f32>,
    len: usize,
}

impl Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data[..self.len]
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }
}

/// A buffer of `len` floats with **unspecified contents** (zeros or stale values from an earlier
/// use on this thread). Return it with [`give`] when done.
pub fn take(len: usize) -> Buffer {
    let reused = POOL.with(|p| {
        let mut pool = p.borrow_mut();
        // The smallest buffer that is long enough, else the longest (it will grow).
        let fit = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len())
            .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
        fit.map(|i| pool.swap_remove(i))
    });
    let mut data = reused.unwrap_or_default();
    if data.len() < len {
        data.resize(len, 0.0);
    }
    Buffer { data, len }
}

/// Returns a buffer from [`take`] to this thread's pool.
pub fn give(buffer: Buffer) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < KEEP {
            pool.push(buffer.data);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer taken shorter and then longer again is not zeroed again: the values past the
    /// short use are still the ones written before (the `memset` this module avoids), and a
    /// request beyond anything held before gets its new values zeroed.
    #[test]
    fn a_buffer_keeps_what_it_held_across_shorter_uses() {
        let mut long = take(64);
        long.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32 + 1.0);
        give(long);
        let short = take(10);
        assert_eq!(short.len(), 10);
        give(short);
        let again = take(64);
        assert_eq!(again.len(), 64);
        assert!(
            again.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0),
            "the values were overwritten"
        );
        give(again);
        let longer = take(100);
        assert_eq!(longer.len(), 100);
        assert!(longer[64..].iter().all(|&v| v == 0.0));
        give(longer);
    }
}
