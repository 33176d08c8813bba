//! # nst-transfer — optimisation and the run loop
//!
//! - [`optim`]: L-BFGS (strong-Wolfe line search by default), Adam, gradient descent;
//! - [`image_io`]: reading any image as RGB in [0, 1] and writing `.png`, `.jpg` or `.npy`;
//! - [`init`]: the starting image (content, noise, style or a file);
//! - [`memory`]: the run's peak memory, estimated before anything large is allocated, and the
//!   budget it must fit (`--max-memory`);
//! - [`color`]: keeping the content's colours (`--preserve-colors`: after the transfer,
//!   luminance-only transfer, or the styles' colour statistics matched to the content's);
//! - [`contact_sheet`]: the image at evenly spaced evaluations, in a grid (`--progress-grid`);
//! - [`plot`]: the loss curves of a run as an SVG chart (`--plot`, `nst plot`);
//! - [`batch`]: the jobs of `nst batch` (content × style pairs, output names, shards);
//! - [`scales`]: coarse-to-fine stages and how the evaluation budget is split over them;
//! - [`run`]: one style-transfer run — objective, initial image, optimizer, evaluation budget,
//!   observers for logging and intermediate images, and the best image kept on interruption.

pub mod batch;
pub mod color;
pub mod contact_sheet;
pub mod image_io;
pub mod init;
pub mod memory;
pub mod optim;
pub mod plot;
pub mod run;
pub mod scales;
