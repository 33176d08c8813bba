//! The feature extractor: preprocessing, then VGG's layers in order, stopping after the deepest
//! one requested.

use crate::arch::{Architecture, Layer};
use crate::error::VggError;
use crate::manifest::Preprocessing;
use crate::weights::{ConvWeights, Weights};
use nst_tensor::{Fused, Var};
use std::path::Path;

/// Which pooling the network uses between blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Max pooling, as trained.
    #[default]
    Max,
    /// Average pooling — Gatys et al. report slightly smoother results with it.
    Avg,
}

/// What exact tiled evaluation needs to know of the network up to some layers: a tile's input
/// window must start on a multiple of `align` pixels (so its pooling windows are the full
/// image's) and reach `halo` pixels past the region it owns on each side where it is not at the
/// image border (so the zero padding at the window's edge never reaches an owned feature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileGeometry {
    /// `2^pools` up to the deepest layer: the pooling grid, in input pixels.
    pub align: usize,
    /// The reach of the window's edge effects, in input pixels, rounded up to `align`.
    pub halo: usize,
    /// Each requested layer's scale: input pixels per feature-map position (`2^pools` before it).
    pub scales: Vec<usize>,
}

/// A VGG network with its weights and its input normalisation. Cloning it shares the weights.
#[derive(Clone)]
pub struct Vgg {
    arch: Architecture,
    preprocessing: Preprocessing,
    pooling: Pooling,
    convs: Vec<ConvWeights>,
    /// Every filter applied transposed ([`Vgg::transposed`]).
    transposed: bool,
}

impl Vgg {
    /// Loads and validates the weights directory `dir` (see [`Weights::load`]).
    pub fn load(dir: &Path) -> Result<Self, VggError> {
        Ok(Self::from_weights(Weights::load(dir)?))
    }

    /// A network from already-loaded weights, with max pooling.
    pub fn from_weights(w: Weights) -> Self {
        Vgg {
            arch: w.arch,
            preprocessing: w.manifest.preprocessing,
            pooling: Pooling::Max,
            convs: w.convs,
            transposed: false,
        }
    }

    /// The same network with every filter applied transposed, `w[o,c,v,u]` (the weights and
    /// their prepared forms shared, not copied; transposed twice, the filters are as stored).
    /// On a transposed image every map it computes is the usual one transposed
    /// (`conv(xᵀ, wᵀ) = conv(x, w)ᵀ`; the ReLU, the pooling and the per-channel input
    /// normalisation commute with transposing), so Gram matrices and content errors, which sum
    /// over positions, come out the same. `nst-loss` runs tall images this way: the convolution
    /// kernels are faster on wide maps (BENCHMARKS.md).
    pub fn transposed(&self) -> Vgg {
        Vgg {
            transposed: !self.transposed,
            ..self.clone()
        }
    }

    /// The same network with another pooling.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// The architecture.
    pub fn arch(&self) -> Architecture {
        self.arch
    }

    /// The loaded convolutions' weights, in network order (`Layer::Conv { conv, .. }` indexes
    /// them).
    pub fn conv_weights(&self) -> &[ConvWeights] {
        &self.convs
    }

    /// The input normalisation.
    pub fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// Resolves layer names (`conv4_2`, `relu4_2`, `pool4`) to layers of this architecture, or
    /// says which name is wrong and lists the valid ones.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<Layer>, VggError> {
        let layers = self.arch.layers();
        names
            .iter()
            .map(|name| {
                layers
                    .iter()
                    .copied()
                    .find(|l| l.name() == *name)
                    .ok_or_else(|| VggError::UnknownLayer {
                        name: name.clone(),
                        arch: self.arch.name().into(),
                        valid: layers
                            .iter()
                            .map(Layer::name)
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect()
    }

    /// The [`TileGeometry`] of the layers `names`. The halo is found by following the damage a
    /// window edge does: each 3×3 convolution spreads it by one position at its scale, each
    /// 2×2 pooling halves it (rounding up); the halo must cover it at every requested layer.
    pub fn tile_geometry(&self, names: &[String]) -> Result<TileGeometry, VggError> {
        let wanted = self.resolve(names)?;
        let layers = self.arch.layers();
        let deepest = wanted
            .iter()
            .filter_map(|l| layers.iter().position(|a| a == l))
            .max()
            .unwrap_or(0);
        let (mut scale, mut damaged, mut reach) = (1usize, 0usize, 0usize);
        let mut scales = vec![1; wanted.len()];
        for layer in &layers[..=deepest] {
            match layer {
                Layer::Conv { conv, .. } => {
                    damaged += self.convs[*conv].weight.shape()[2] / 2;
                }
                Layer::Relu { .. } => {}
                Layer::Pool { .. } => {
                    damaged = damaged.div_ceil(2);
                    scale *= 2;
                }
            }
            for (i, w) in wanted.iter().enumerate() {
                if w == layer {
                    scales[i] = scale;
                    reach = reach.max(damaged * scale);
                }
            }
        }
        Ok(TileGeometry {
            align: scale,
            halo: reach.div_ceil(scale) * scale,
            scales,
        })
    }

    /// Checks that an `h×w` image reaches every requested layer: each pooling on the way must
    /// see a map of at least 2×2.
    pub fn check_size(&self, h: usize, w: usize, names: &[String]) -> Result<(), VggError> {
        self.check_reach(h, w, &self.resolve(names)?)
    }

    /// [`Vgg::check_size`] for layers already resolved.
    fn check_reach(&self, h: usize, w: usize, wanted: &[Layer]) -> Result<(), VggError> {
        let all = self.arch.layers();
        let Some(depth) = wanted
            .iter()
            .filter_map(|l| all.iter().position(|a| a == l))
            .max()
        else {
            return Ok(());
        };
        let (mut ph, mut pw) = (h, w);
        for layer in &all[..=depth] {
            if let Layer::Pool { .. } = layer {
                if ph < 2 || pw < 2 {
                    return Err(VggError::ImageTooSmall {
                        h,
                        w,
                        layer: all[depth].name(),
                        pool: layer.name(),
                        ph,
                        pw,
                    });
                }
                (ph, pw) = (ph / 2, pw / 2);
            }
        }
        Ok(())
    }

    /// The feature maps of `names` for `image` (RGB in [0, 1], shape 1×3×H×W), in the order
    /// asked, on `image`'s tape. Runs the network only as deep as the deepest requested layer.
    ///
    /// The input is first normalised as the weights expect — channel reorder, then
    /// `(x·scale − mean)/std` — and only then zero-padded by the first convolution, as in the
    /// frameworks the weights come from.
    pub fn features<'g>(&self, image: Var<'g>, names: &[String]) -> Result<Vec<Var<'g>>, VggError> {
        self.features_unless(image, names, &|| false)
            .map(|maps| maps.expect("a pass that is never stopped ends"))
    }

    /// [`Vgg::features`], asking `stop` before each layer and ending at the first yes with
    /// `Ok(None)` (the tape is then of no use: drop its graph). Lets a run told to stop get out
    /// of a long evaluation within a layer (see `Graph::backward_unless` for the other half).
    pub fn features_unless<'g>(
        &self,
        image: Var<'g>,
        names: &[String],
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<Var<'g>>>, VggError> {
        let shape = image.shape();
        assert!(
            shape.len() == 4 && shape[1] == 3,
            "Vgg::features: expected a 1×3×H×W image, got shape {shape:?}"
        );
        let wanted = self.resolve(names)?;
        self.check_reach(shape[2], shape[3], &wanted)?;
        let mut out: Vec<Option<Var<'g>>> = vec![None; wanted.len()];
        let mut remaining = wanted.len();
        let mut x = self.preprocess(image);
        // Whether `x` is one of the maps returned (the caller reads it; others are released
        // once the next layer has consumed them).
        let mut x_returned = false;
        let graph = image.graph();
        let layers = self.arch.layers();
        // Layers after a convolution that already ran inside it (its ReLU, and its pooling).
        let mut fused = 0;
        for (i, &layer) in layers.iter().enumerate() {
            if remaining == 0 {
                break;
            }
            if stop() {
                return Ok(None);
            }
            if fused > 0 {
                fused -= 1;
            } else {
                let input = x;
                x = match layer {
                    Layer::Conv { conv, .. } => {
                        let cw = &self.convs[conv];
                        let w = graph.constant(cw.weight.clone());
                        let b = graph.constant(cw.bias.clone());
                        // A convolution whose raw output nobody asked for is fused with the
                        // ReLU after it: one pass over the map instead of two; and, if nobody
                        // asked for the ReLU's output either, with a max pooling after that: the
                        // map at full resolution is then never stored.
                        let relu_next = matches!(layers.get(i + 1), Some(Layer::Relu { .. }));
                        let pool_after = matches!(layers.get(i + 2), Some(Layer::Pool { .. }))
                            && self.pooling == Pooling::Max;
                        let kind = if relu_next
                            && pool_after
                            && !wanted.contains(&layer)
                            && !wanted.contains(&layers[i + 1])
                        {
                            Fused::ReluMaxPool2
                        } else if relu_next && !wanted.contains(&layer) {
                            Fused::Relu
                        } else {
                            Fused::None
                        };
                        // The layers the op stands for, and its label: `conv1_2+relu1_2+pool1`.
                        fused = match kind {
                            Fused::ReluMaxPool2 => 2,
                            Fused::Relu => 1,
                            Fused::None => 0,
                        };
                        let name: Vec<String> =
                            layers[i..=i + fused].iter().map(|l| l.name()).collect();
                        x.conv2d_fused(w, Some(b), 1, kind, self.transposed)
                            .label(&name.join("+"))
                    }
                    Layer::Relu { .. } => x.relu().label(&layer.name()),
                    Layer::Pool { .. } => match self.pooling {
                        Pooling::Max => x.max_pool2(),
                        Pooling::Avg => x.avg_pool2(),
                    }
                    .label(&layer.name()),
                };
                if !x_returned {
                    input.release();
                }
                x_returned = false;
            }
            for (slot, w) in out.iter_mut().zip(&wanted) {
                if *w == layer && slot.is_none() {
                    *slot = Some(x);
                    remaining -= 1;
                    x_returned = true;
                }
            }
        }
        Ok(Some(
            out.into_iter()
                .map(|v| v.expect("every resolved layer is reached"))
                .collect(),
        ))
    }

    /// `(reorder(x)·scale − mean)/std`, as one channel gather and one per-channel affine map.
    fn preprocess<'g>(&self, image: Var<'g>) -> Var<'g> {
        let p = &self.preprocessing;
        let index = p.channel_index().expect("validated when loaded");
        let x = if index == [0, 1, 2] {
            image
        } else {
            image.gather_channels(&index)
        };
        let scale: Vec<f32> = (0..3).map(|c| p.scale / p.std[c]).collect();
        let shift: Vec<f32> = (0..3).map(|c| -p.mean[c] / p.std[c]).collect();
        x.channel_affine(&scale, &shift)
    }
}
