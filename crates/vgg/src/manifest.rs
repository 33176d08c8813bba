//! `weights/<name>/manifest.json`: what the weight files are and how the network wants its
//! input.
//!
//! ```json
//! {
//!   "architecture": "vgg16",
//!   "preprocessing": { "channel_order": "BGR", "scale": 255.0,
//!                      "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0] },
//!   "source": "where the numbers came from",
//!   "files": { "conv1_1.weight.npy": "<sha-256 hex>", "conv1_1.bias.npy": "…", … }
//! }
//! ```

use crate::arch::Architecture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The parsed manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `"vgg16"` or `"vgg19"`.
    pub architecture: String,
    /// The input normalisation the weights were trained with.
    pub preprocessing: Preprocessing,
    /// Provenance: the checkpoint the weights were converted from.
    pub source: String,
    /// SHA-256 (lowercase hex) of every weight file, by file name.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses and checks a manifest's text: valid JSON of this shape, a known architecture, a
    /// channel order of RGB or BGR, and a positive, finite scale and std. Returns the manifest
    /// and its architecture, or what is wrong.
    pub fn parse(text: &str) -> Result<(Manifest, Architecture), String> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let arch = Architecture::from_name(&manifest.architecture).ok_or_else(|| {
            format!(
                "unknown architecture '{}' (expected vgg16 or vgg19)",
                manifest.architecture
            )
        })?;
        let p = &manifest.preprocessing;
        if p.channel_index().is_none() {
            return Err(format!(
                "channel_order '{}' is not RGB or BGR",
                p.channel_order
            ));
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !positive(p.scale) || !p.std.iter().all(|&s| positive(s)) {
            return Err("scale and std must be positive and finite".into());
        }
        if !p.mean.iter().all(|m| m.is_finite()) {
            return Err("mean must be finite".into());
        }
        Ok((manifest, arch))
    }
}

/// The network's input normalisation: the image variable `x` (RGB, [0, 1]) is fed as
/// `(reorder(x)·scale − mean) / std`, channel by channel — where `mean` and `std` are listed in
/// the network's own channel order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// `"RGB"` (torchvision) or `"BGR"` (Caffe, Keras).
    pub channel_order: String,
    /// `1` for [0, 1] inputs (torchvision) or `255` for 0–255 inputs (Caffe, Keras).
    pub scale: f32,
    /// Per-channel mean, in `channel_order`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in `channel_order` (`[1,1,1]` for Caffe).
    pub std: [f32; 3],
}

impl Preprocessing {
    /// torchvision's ImageNet normalisation: RGB, [0, 1], mean (0.485, 0.456, 0.406), std
    /// (0.229, 0.224, 0.225).
    pub fn torchvision() -> Self {
        Preprocessing {
            channel_order: "RGB".into(),
            scale: 1.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// Caffe's (and Keras' `"caffe"` mode): BGR, 0–255, mean (103.939, 116.779, 123.68), no std.
    pub fn caffe() -> Self {
        Preprocessing {
            channel_order: "BGR".into(),
            scale: 255.0,
            mean: [103.939, 116.779, 123.68],
            std: [1.0, 1.0, 1.0],
        }
    }

    /// The channel permutation from RGB to the network's order, or `None` if invalid.
    pub fn channel_index(&self) -> Option<[usize; 3]> {
        match self.channel_order.as_str() {
            "RGB" => Some([0, 1, 2]),
            "BGR" => Some([2, 1, 0]),
            _ => None,
        }
    }

    /// One line for the user: `BGR ×255 − mean (103.939, 116.779, 123.68) / std (1, 1, 1)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ×{} − mean ({}, {}, {}) / std ({}, {}, {})",
            self.channel_order,
            self.scale,
            self.mean[0],
            self.mean[1],
            self.mean[2],
            self.std[0],
            self.std[1],
            self.std[2]
        )
    }
}
