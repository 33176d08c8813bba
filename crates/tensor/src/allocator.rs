//! The allocator setting every process that evaluates the network should make first.

/// Tells glibc's allocator to keep freed memory for reuse instead of returning it to the system.
///
/// Every evaluation allocates and frees the same few hundred megabytes of feature maps and
/// gradients. By default glibc serves blocks over 32 MB with fresh `mmap`s and unmaps them on
/// free, so each evaluation page-faults all of it in again (and pays TLB shootdowns on unmap):
/// measured, 15% of an evaluation at 512×384. Serving everything from the heap and never trimming
/// it makes the second evaluation onwards reuse warm pages. *Never* is `M_TRIM_THRESHOLD = -1`
/// (glibc's documented "disable trimming"): the largest `int`, as first written, still trimmed a
/// free top of the heap above 2 GiB, which a print-size evaluation leaves — at 1536×2048
/// evaluated transposed every evaluation then faulted ~2.5 GB back in (640 000 minor faults,
/// a quarter of its time; BENCHMARKS.md). The CLI and the kernel benchmarks call it first thing
/// in `main` (a benchmark without it would time page faults, not kernels).
///
/// # Safety
/// Call it before the process starts any other thread: glibc documents `mallopt` as safe only
/// during initialisation.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub unsafe fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters, both values are valid for these options,
    // and the caller guarantees no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

/// Elsewhere the system allocator is left as it is.
///
/// # Safety
/// None needed; `unsafe` only to match the glibc build's signature.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub unsafe fn keep_freed_memory() {}
