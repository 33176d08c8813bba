//! The image the optimisation starts from.

use crate::image_io::{self, ImageIoError};
use nst_tensor::ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// Where the optimisation starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// The content image (the default: converges fastest to a Gatys-like result).
    Content,
    /// White noise, uniform in [0,1), from a seeded generator (as in the paper's Fig. 2).
    Noise,
    /// The (first) style image, resized to the content's size.
    Style,
    /// An image file (resized to the content's size, as jcjohnson/neural-style does), or a
    /// float32 H×W×3 `.npy` as `nst` writes (exact values: it must have the content's size).
    Path(PathBuf),
}

impl Init {
    /// Parses `content`, `noise`, `style`, or anything else as a path.
    pub fn parse(s: &str) -> Self {
        match s {
            "content" => Init::Content,
            "noise" => Init::Noise,
            "style" => Init::Style,
            path => Init::Path(path.into()),
        }
    }
}

/// The initial image (1×3×H×W) for `init`, given the prepared content and first style images;
/// a file is read using at most `limit` bytes (see [`image_io::load`]).
pub fn initial_image(
    init: &Init,
    content: &ArrayD<f32>,
    style: &image::Rgb32FImage,
    seed: u64,
    limit: u64,
) -> Result<ArrayD<f32>, ImageIoError> {
    let (h, w) = (content.shape()[2], content.shape()[3]);
    match init {
        Init::Content => Ok(content.clone()),
        Init::Noise => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            Ok(content.mapv(|_| rng.random::<f32>()))
        }
        Init::Style => Ok(image_io::to_variable(&image_io::resize_exact(
            style, w as u32, h as u32,
        ))),
        Init::Path(path) => {
            let is_npy = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            if !is_npy {
                let img = image_io::load(path, limit)?;
                let resized = image_io::resize_exact(&img, w as u32, h as u32);
                return Ok(image_io::to_variable(&resized));
            }
            let x = image_io::load_npy(path, limit)?;
            if x.shape() != content.shape() {
                return Err(ImageIoError::WrongSize {
                    path: path.clone(),
                    reason: format!(
                        "initial .npy is {}×{}, but the content image is prepared at {w}×{h} (width×height); use the same size",
                        x.shape()[3],
                        x.shape()[2]
                    ),
                });
            }
            Ok(x)
        }
    }
}
