//! Any bytes as a `.npy` init image: an error or an H×W×3 image, never a panic or a huge
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(x) = nst_transfer::image_io::npy_image(bytes, Path::new("fuzz.npy")) {
        assert_eq!(x.shape()[1], 3);
    }
});
