//! # nst-loss — the objective
//!
//! The three terms of neural style transfer (Gatys, Ecker & Bethge, 2015), each in its own file
//! with its formula, and [`Objective`], which ties them to a VGG network:
//!
//! `L(x) = α·L_c(x) + β·L_s(x) + γ·L_tv(x)`
//!
//! - [`content_loss`]: `mean_l mean_i (F_l(x) − F_l(c))²`;
//! - [`style_loss`]: `mean_l mean_ij (G_l(x) − A_l)²`, with [`gram_matrix`]
//!   `G_l = F_l F_lᵀ / (C_l H_l W_l)` (the engine computes the plain sum `F·Fᵀ`);
//! - [`tv_loss`]: squared neighbour differences over `3·H·W`.
//!
//! [`tiled`] evaluates the same objective tile by tile, exactly (for images too large to
//! evaluate whole).

mod content;
mod objective;
mod style;
pub mod tiled;
mod tv;

pub use content::content_loss;
pub use objective::{
    runs_transposed, style_grams, transpose_hw, Evaluation, Layers, LossWeights, Objective,
};
pub use style::{blend_grams, gram_matrix, style_layer_losses, style_loss};
pub use tv::tv_loss;
