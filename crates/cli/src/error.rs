//! How a command can fail: one enum, so that each cause keeps its type and source until `main`
//! prints it (one line, `error: …`) and exits with 1.

use nst_transfer::batch::BatchError;
use nst_transfer::image_io::ImageIoError;
use nst_transfer::memory::MemoryError;
use nst_vgg::VggError;
use std::path::PathBuf;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An option value that cannot work, found before any work is done.
    #[error("{0}")]
    Invalid(String),
    /// No weights directory could be found.
    #[error(
        "no VGG weights found (looked in {looked}); fetch them with \
         `python3 tools/fetch_weights.py --user` or pass --weights DIR"
    )]
    NoWeights {
        /// Every directory looked at, comma-separated.
        looked: String,
    },
    /// The weights could not be loaded, or the network refused the layers or the size.
    #[error(transparent)]
    Network(#[from] VggError),
    /// An image could not be read or written.
    #[error(transparent)]
    Image(#[from] ImageIoError),
    /// The run does not fit the memory budget.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A batch's inputs, outputs or shard cannot be set up.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The JSON log could not be created or written.
    #[error("the JSON log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The worker threads could not be started.
    #[error("cannot start {threads} threads: {reason}")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// What rayon said.
        reason: String,
    },
    /// A loss or gradient stopped being finite; `kept` says where the best finite image went.
    #[error(
        "evaluation {eval} gave a non-finite loss or gradient (are the weights too large? \
         α={alpha} β={beta} γ={gamma}); stopped{kept}"
    )]
    NonFinite {
        /// The evaluation (counted over all stages).
        eval: usize,
        /// The term weights in use.
        alpha: f32,
        /// See `alpha`.
        beta: f32,
        /// See `alpha`.
        gamma: f32,
        /// `"; wrote the best finite image (evaluation N) to OUT"`, or empty.
        kept: String,
    },
}

impl From<String> for CliError {
    fn from(msg: String) -> Self {
        CliError::Invalid(msg)
    }
}

impl From<&str> for CliError {
    fn from(msg: &str) -> Self {
        CliError::Invalid(msg.to_string())
    }
}
