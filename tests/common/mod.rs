//! What the end-to-end test files share: where the repository and the weights are, scratch
//! directories, and process output.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The real VGG16 weights; fails saying how to fetch them if they are absent.
pub fn weights() -> PathBuf {
    let dir = root().join("weights/vgg16");
    assert!(
        dir.join("manifest.json").is_file(),
        "these tests need the real VGG16 weights in {}; fetch them with: python3 tools/fetch_weights.py",
        dir.display()
    );
    dir
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A process's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A demo image of `tests/data`.
pub fn data(name: &str) -> PathBuf {
    root().join("tests/data").join(name)
}

/// The path as a `&str` argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
