//! # nst-transfer — optimisation and the run loop
//!
//! - [`optim`]: L-BFGS (strong-Wolfe line search by default), Adam, gradient descent;
//! - [`image_io`]: reading any image as RGB in [0, 1] and writing `.png`, `.jpg` or `.npy`;
//! - [`init`]: the starting image (content, noise, style or a file);
//! - [`memory`]: the run's peak memory, estimated before anything large is allocated, and the
//!   budget it must fit (`--max-memory`);
//! - [`color`]: keeping the content's colours (luminance-only transfer);
//! - [`scales`]: coarse-to-fine stages and how the evaluation budget is split over them;
//! - [`run`]: one style-transfer run — objective, initial image, optimizer, evaluation budget,
//!   observers for logging and intermediate images, and the best image kept on interruption.

pub mod color;
pub mod image_io;
pub mod init;
pub mod memory;
pub mod optim;
pub mod run;
pub mod scales;
