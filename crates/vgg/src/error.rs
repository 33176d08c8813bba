//! Everything a user can get wrong about the network: weights on disk and layer requests.

use std::path::PathBuf;
use thiserror::Error;

/// A failure to load weights or to extract the requested features.
#[derive(Debug, Error)]
pub enum VggError {
    /// The weights directory or its manifest cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `manifest.json` is not valid or says something impossible.
    #[error("invalid manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weight file the architecture needs is missing.
    #[error("missing weight file {0} (fetch the weights with `python3 tools/fetch_weights.py`)")]
    MissingFile(PathBuf),
    /// A weight file's SHA-256 differs from the manifest's.
    #[error("hash mismatch for {path}: manifest says {expected}, file has {actual} (corrupt or replaced; fetch it again)")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// A weight file is not a readable `.npy` (truncated, or not NumPy's format).
    #[error("{path} is not a valid .npy file: {reason}")]
    BadNpy {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// A weight file holds something other than little-endian float32.
    #[error("{path} has dtype {found}, expected float32 ('<f4')")]
    WrongDtype {
        /// The file.
        path: PathBuf,
        /// The dtype it has.
        found: String,
    },
    /// A weight file has the wrong shape for its layer.
    #[error("{path} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// The file.
        path: PathBuf,
        /// The shape it has.
        found: Vec<u64>,
        /// The shape the architecture needs.
        expected: Vec<u64>,
    },
    /// A requested layer name is not a layer of this architecture.
    #[error("unknown layer '{name}' for {arch}; valid layers: {valid}")]
    UnknownLayer {
        /// The name asked for.
        name: String,
        /// The architecture.
        arch: String,
        /// Every valid name, comma-separated.
        valid: String,
    },
    /// The image is too small for the requested depth (a pooling would leave no pixel).
    #[error("image of {w}×{h} pixels is too small to reach layer '{layer}': {pool} would pool a {pw}×{ph} map; use a larger --size or shallower layers")]
    ImageTooSmall {
        /// Image height.
        h: usize,
        /// Image width.
        w: usize,
        /// The deepest requested layer.
        layer: String,
        /// The pooling that fails.
        pool: String,
        /// Height of the map it would pool.
        ph: usize,
        /// Width of the map it would pool.
        pw: usize,
    },
}
