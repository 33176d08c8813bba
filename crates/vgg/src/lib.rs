//! # nst-vgg — the network
//!
//! VGG16 and VGG19 (Simonyan & Zisserman, 2014) as feature extractors for style transfer:
//! the architectures as data ([`arch`]), weights from `.npy` files checked against a manifest
//! ([`weights`], [`manifest`]), and a forward pass that returns the requested layers' feature
//! maps on the autodiff tape ([`Vgg::features`]). The image variable is always RGB in [0, 1]; each
//! network's own preprocessing comes from its manifest and is part of the forward pass.

pub mod arch;
pub mod error;
pub mod manifest;
pub mod network;
pub mod weights;

pub use arch::{Architecture, Layer};
pub use error::VggError;
pub use manifest::{Manifest, Preprocessing};
pub use network::{Pooling, TileGeometry, Vgg};
pub use weights::{check_npy_header, ConvWeights, Weights};
