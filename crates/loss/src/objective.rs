//! The whole objective `L = α·L_c + β·L_s + γ·L_tv` of one image, and its gradient.

use crate::content::mean_of_layers;
use crate::{blend_grams, content_loss, gram_matrix, style_layer_losses, tiled, tv_loss};
use nst_tensor::ndarray::ArrayD;
use nst_tensor::{Graph, OpTiming, Var};
use nst_vgg::{Vgg, VggError};
use std::sync::Arc;

/// The weights `α`, `β`, `γ` of the three terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// `α`, the content weight.
    pub content: f32,
    /// `β`, the style weight.
    pub style: f32,
    /// `γ`, the total-variation weight.
    pub tv: f32,
}

/// Which layers carry which loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Layers {
    /// Content layers (default `relu4_2`).
    pub content: Vec<String>,
    /// Style layers (default `relu1_1, relu2_1, relu3_1, relu4_1, relu5_1`).
    pub style: Vec<String>,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            content: vec!["relu4_2".into()],
            style: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// One evaluation: the total, the *unweighted* terms, and `∂L/∂x`.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// `L = α·L_c + β·L_s + γ·L_tv`.
    pub total: f32,
    /// `L_c`.
    pub content: f32,
    /// `L_s`.
    pub style: f32,
    /// `L_tv`.
    pub tv: f32,
    /// The style term of each style layer, `mean_ij (G_l − A_l)²` (their mean is `L_s`).
    pub style_layers: Vec<f32>,
    /// `∂L/∂x`, the shape of the image.
    pub grad: ArrayD<f32>,
}

impl Evaluation {
    /// Whether the total and every gradient entry are finite: float32 overflows (huge weights,
    /// pixel values far outside [0, 1]) give `inf` or `NaN`, from which no step can be taken.
    pub fn is_finite(&self) -> bool {
        self.total.is_finite() && self.grad.iter().all(|g| g.is_finite())
    }
}

/// The objective for one content image and one or more style images, with its targets — the
/// content features `F_l(c)` and the blended style Grams `A_l` — computed once up front.
pub struct Objective<'n> {
    pub(crate) vgg: &'n Vgg,
    pub(crate) layers: Layers,
    /// The content layers then the style layers: what one forward pass extracts.
    pub(crate) all_layers: Vec<String>,
    pub(crate) weights: LossWeights,
    pub(crate) content_targets: Vec<Arc<ArrayD<f32>>>,
    pub(crate) style_targets: Vec<Arc<ArrayD<f32>>>,
    /// Tile side of exact tiled evaluation (`crate::tiled`), or `None` for whole images.
    tile: Option<usize>,
    /// For a tall image evaluated whole, the network with its filters transposed
    /// ([`Vgg::transposed`]): the content targets and every evaluation run through it on the
    /// transposed image, as the wide image it is transposed ([`runs_transposed`]).
    transposed_vgg: Option<Vgg>,
}

/// Whether an image of `h × w` pixels is evaluated transposed: when it is taller than wide and
/// evaluated whole. The objective is the same — every map is the usual one transposed and the
/// losses sum over positions — but the convolutions run faster on wide maps, whose rows hold
/// more Winograd tiles: at 384×512 an evaluation took 252–260 ms against 236–241 ms for
/// 512×384, 341×512 252–257 against 216–225, 288×512 209–213 against 190–193 (AMD EPYC Zen 5,
/// `nst bench`). Of nineteen tall shapes measured, three whose own rows are already long
/// (450×600, 480×640, 510×680) lose 2–6% this way, and no simple rule told them apart
/// (BENCHMARKS.md). Tiled evaluation keeps the image as it is (its tiles are cut and placed in
/// image coordinates).
pub fn runs_transposed(h: usize, w: usize, tile: Option<usize>) -> bool {
    tile.is_none() && h > w
}

/// Each image of `x` (`N×C×H×W`) transposed, `N×C×W×H`, in blocks of 16×16 values (a cache
/// line's worth of each row and column). ndarray's own copy of the permuted view gives the same
/// array but made evaluations at 384×512 ~2.5% slower (257.0 against 249.9 ms, `nst bench`,
/// alternated, AMD EPYC Zen 5).
pub fn transpose_hw(x: &ArrayD<f32>) -> ArrayD<f32> {
    const B: usize = 16;
    let s = x.shape();
    let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
    let mut shape = s.to_vec();
    shape.swap(s.len() - 2, s.len() - 1);
    let src = x.as_standard_layout();
    let src = src.as_slice().expect("standard layout");
    let mut out = vec![0.0; src.len()];
    if h * w > 0 {
        for (from, to) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(h * w)) {
            for i0 in (0..h).step_by(B) {
                for j0 in (0..w).step_by(B) {
                    for i in i0..(i0 + B).min(h) {
                        for j in j0..(j0 + B).min(w) {
                            to[j * h + i] = from[i * w + j];
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(shape, out).expect("the same number of values")
}

impl<'n> Objective<'n> {
    /// Computes the targets. Images are 1×3×H×W, RGB in [0, 1]; styles may have any size that
    /// reaches the style layers. `blend` holds one weight per style (normalised here).
    pub fn new(
        vgg: &'n Vgg,
        content: &ArrayD<f32>,
        styles: &[ArrayD<f32>],
        blend: &[f32],
        layers: Layers,
        weights: LossWeights,
    ) -> Result<Self, VggError> {
        Self::with_tiles(vgg, content, styles, blend, layers, weights, None)
    }

    /// [`Objective::new`], and with `tile = Some(side)` every network pass — the targets and
    /// each evaluation — runs tile by tile (exact tiled evaluation, see the `tiled` module):
    /// the same objective and gradient, with memory that follows tiles of `side` pixels.
    pub fn with_tiles(
        vgg: &'n Vgg,
        content: &ArrayD<f32>,
        styles: &[ArrayD<f32>],
        blend: &[f32],
        layers: Layers,
        weights: LossWeights,
        tile: Option<usize>,
    ) -> Result<Self, VggError> {
        let mut per_style = Vec::new();
        for s in styles {
            per_style.push(style_grams(vgg, s, &layers.style, tile)?);
        }
        Self::from_style_grams(vgg, content, &per_style, blend, layers, weights, tile)
    }

    /// [`Objective::with_tiles`] with each style's Grams already computed by [`style_grams`]
    /// (one entry per style, in `layers.style` order): a batch over many contents computes a
    /// style's Grams once. The result is the same objective, bit for bit.
    pub fn from_style_grams(
        vgg: &'n Vgg,
        content: &ArrayD<f32>,
        per_style: &[Vec<Arc<ArrayD<f32>>>],
        blend: &[f32],
        layers: Layers,
        weights: LossWeights,
        tile: Option<usize>,
    ) -> Result<Self, VggError> {
        let [h, w] = [content.shape()[2], content.shape()[3]];
        let all_layers = [layers.content.clone(), layers.style.clone()].concat();
        vgg.check_size(h, w, &all_layers)?;
        let transposed_vgg = runs_transposed(h, w, tile).then(|| vgg.transposed());
        let content_targets = match (tile, &transposed_vgg) {
            (Some(side), _) => tiled::tiled_features(vgg, content, &layers.content, side)?,
            (None, Some(vt)) => constant_features(vt, &transpose_hw(content), &layers.content)?,
            (None, None) => constant_features(vgg, content, &layers.content)?,
        };
        let style_targets = (0..layers.style.len())
            .map(|l| {
                let grams: Vec<_> = per_style.iter().map(|s| Arc::clone(&s[l])).collect();
                blend_grams(&grams, blend)
            })
            .collect();
        Ok(Objective {
            vgg,
            layers,
            all_layers,
            weights,
            content_targets,
            style_targets,
            tile,
            transposed_vgg,
        })
    }

    /// Whether evaluations run on the transposed image ([`runs_transposed`]).
    pub fn is_transposed(&self) -> bool {
        self.transposed_vgg.is_some()
    }

    /// The same objective evaluated on the image as it is, never transposed: for comparing the
    /// two ways (tests, timings). Its content targets are the transposed ones transposed back.
    pub fn upright(mut self) -> Self {
        if self.transposed_vgg.take().is_some() {
            self.content_targets = self
                .content_targets
                .iter()
                .map(|t| Arc::new(transpose_hw(t)))
                .collect();
        }
        self
    }

    /// The layers in use.
    pub fn layers(&self) -> &Layers {
        &self.layers
    }

    /// The term weights in use.
    pub fn weights(&self) -> LossWeights {
        self.weights
    }

    /// `L(x)` and `∂L/∂x` for the image `x` (1×3×H×W, the content's size): one forward pass to
    /// the deepest layer needed, one backward pass. Only the image gets a gradient.
    pub fn evaluate(&self, x: &ArrayD<f32>) -> Evaluation {
        self.evaluate_unless(x, &|| false)
            .expect("an evaluation that is never stopped finishes")
    }

    /// [`evaluate`](Self::evaluate), or `None` if `stop` says yes before it is done. `stop` is
    /// asked before every layer of the forward pass and every op of the backward pass (of every
    /// tile, when tiled), so an evaluation ends within a layer of being told to: one can take
    /// tens of seconds to minutes at print sizes, more than the grace period a scheduler leaves
    /// between its SIGTERM and its SIGKILL.
    pub fn evaluate_unless(&self, x: &ArrayD<f32>, stop: &dyn Fn() -> bool) -> Option<Evaluation> {
        match self.tile {
            Some(side) => self.evaluate_tiled(x, side, stop),
            None => self.evaluate_on(&Graph::new(), x, stop),
        }
    }

    /// [`evaluate`](Self::evaluate), timing every op: the evaluation and, per op of the tape
    /// (network layers labelled by name), its forward and backward wall time.
    pub fn evaluate_profiled(&self, x: &ArrayD<f32>) -> (Evaluation, Vec<OpTiming>) {
        let g = Graph::profiled();
        let e = self
            .evaluate_on(&g, x, &|| false)
            .expect("an evaluation that is never stopped finishes");
        (e, g.profile())
    }

    fn evaluate_on(
        &self,
        g: &Graph,
        x: &ArrayD<f32>,
        stop: &dyn Fn() -> bool,
    ) -> Option<Evaluation> {
        let (vgg, image) = match &self.transposed_vgg {
            Some(vt) => (vt, g.param(transpose_hw(x))),
            None => (self.vgg, g.param(x.clone())),
        };
        let feats = vgg
            .features_unless(image, &self.all_layers, stop)
            .expect("layers and size validated in new")?;
        let (content_feats, style_feats) = feats.split_at(self.layers.content.len());
        let lc = content_loss(content_feats, &self.content_targets);
        let per_layer = style_layer_losses(style_feats, &self.style_targets);
        let style_layers: Vec<f32> = per_layer.iter().map(|l| l.item()).collect();
        let ls = mean_of_layers(per_layer.into_iter());
        let ltv = tv_loss(image);
        let w = self.weights;
        let total: Var = lc.scale(w.content) + ls.scale(w.style) + ltv.scale(w.tv);
        // The maps themselves are no longer read (the tape keeps what the Gram derivative needs).
        feats.iter().for_each(|f| f.release());
        // The backward pass frees the tape as it goes: read the terms first.
        let (total_v, content, style, tv) = (total.item(), lc.item(), ls.item(), ltv.item());
        let mut grads = g.backward_unless(total, stop)?;
        let grad = match grads.take(image) {
            Some(dx) if self.is_transposed() => transpose_hw(&dx),
            Some(dx) => dx,
            None => ArrayD::zeros(x.raw_dim()),
        };
        Some(Evaluation {
            total: total_v,
            content,
            style,
            tv,
            style_layers,
            grad,
        })
    }
}

/// The raw Gram matrices `F_l·F_lᵀ` of one style image (1×3×H×W) at each of `layers`, computed
/// whole or, with `tile = Some(side)`, tile by tile (the same sums).
pub fn style_grams(
    vgg: &Vgg,
    style: &ArrayD<f32>,
    layers: &[String],
    tile: Option<usize>,
) -> Result<Vec<Arc<ArrayD<f32>>>, VggError> {
    Ok(match tile {
        Some(side) => {
            vgg.check_size(style.shape()[2], style.shape()[3], layers)?;
            tiled::tiled_grams(vgg, style, layers, side)?
        }
        None => {
            let g = Graph::new();
            let feats = vgg.features(g.constant(Arc::new(style.clone())), layers)?;
            feats.into_iter().map(|f| gram_matrix(f).value()).collect()
        }
    })
}

/// Feature maps of a constant image (no tape work kept for gradients).
fn constant_features(
    vgg: &Vgg,
    image: &ArrayD<f32>,
    names: &[String],
) -> Result<Vec<Arc<ArrayD<f32>>>, VggError> {
    let g = Graph::new();
    let feats = vgg.features(g.constant(Arc::new(image.clone())), names)?;
    Ok(feats.into_iter().map(|f| f.value()).collect())
}

impl LossWeights {
    /// The default weights for a network with input normalisation `p`.
    ///
    /// For Caffe-scale networks (inputs in 0–255, like our VGG16) they are `α = 5`, `β = 500`,
    /// `γ = 0`: the classic implementation's content weight 5 and style weight 100 per layer
    /// (summed over five layers, i.e. 500 for our mean over layers), which reproduces the
    /// published Starry Night Tübingen. Feature maps scale with the network's input range `r`
    /// (`scale / mean(std)`: 255 for Caffe, ≈4.4 for torchvision), content losses with `r²`
    /// and style losses with `r⁴`; so with `k = r/255`, `α = 5/k²` and `β = 500/k⁴` keep the
    /// same balance on any weights. Total variation acts on the image, so `γ` does not scale.
    pub fn default_for(p: &nst_vgg::Preprocessing) -> Self {
        let range = p.scale as f64 / (p.std.iter().map(|&s| s as f64).sum::<f64>() / 3.0);
        let k = range / 255.0;
        LossWeights {
            content: (5.0 / (k * k)) as f32,
            style: (500.0 / k.powi(4)) as f32,
            tv: 0.0,
        }
    }
}
