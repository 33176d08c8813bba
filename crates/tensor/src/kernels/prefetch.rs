//! Software prefetches: asking for memory a kernel reads soon, where the processor's own
//! prefetcher cannot guess it (the next channel's row of a transform, the next chunk of many
//! rows at once). Hints only: they change no result and cannot fault.

/// Asks for `data` to be brought into the cache, one request per 64-byte line.
#[inline(always)]
pub(crate) fn slice<V>(data: &[V]) {
    lines(data.as_ptr() as usize, size_of_val(data));
}

/// Asks for the `bytes` bytes at address `addr` to be brought into the cache, one request per
/// 64-byte line: a hint, which reads nothing into the program and changes no result.
#[inline(always)]
pub(crate) fn lines(addr: usize, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..bytes).step_by(64) {
        // SAFETY: SSE is part of every x86-64 processor, and a prefetch is a hint: it does not
        // access memory as far as the program is concerned and cannot fault, whatever the
        // address (the callers' addresses lie inside live buffers anyway).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (addr + offset) as *const i8,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, bytes);
}
