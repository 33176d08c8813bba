//! Any bytes as a weights manifest: an error or a manifest with a known architecture and a
//! usable normalisation, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok((m, _)) = nst_vgg::Manifest::parse(text) {
            assert!(m.preprocessing.channel_index().is_some());
        }
    }
});
