//! Any bytes as an image file, decoded within a 64 MiB limit the way `nst` decodes its inputs:
//! an error or an image, never a panic, and never more memory than the limit allows (libFuzzer's
//! `-rss_limit_mb` catches a decoder that tries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    let reader = std::io::Cursor::new(bytes);
    let _ = nst_transfer::image_io::decode(reader, Path::new("fuzz.img"), 64 << 20);
});
