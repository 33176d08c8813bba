//! Exact tiled evaluation: the same objective and gradient as the untiled one, with memory
//! that follows the tile instead of the image.
//!
//! Both loss terms are sums over feature-map positions — the content term of `(F − P)²`, the
//! Gram matrix of `f_p f_pᵀ` — so the image is cut into tiles, each *owning* a rectangle of
//! positions at every layer. A tile's features are computed from an input window widened by the
//! network's halo (`nst_vgg::TileGeometry`) and aligned to its pooling grid, so the features at
//! the positions it owns are exactly the full image's; the rest of the window is discarded.
//!
//! 1. **First pass** (forward only): each tile adds its owned positions' raw Gram `Σ f_p f_pᵀ`
//!    and content error `Σ (F − P)²` to running sums (in f64). This gives the loss, and each
//!    style layer's `G_l` and `∂L/∂G_l = D_l = 2·(G_l − A_l)/(n_s·C_l²)`.
//! 2. **Second pass**: each tile again, on a tape, with the surrogate
//!    `α·Σ_l Σ_owned (F − P)²/(n_c·N_l) + β·Σ_l ⟨D_l, Σ_owned f_p f_pᵀ⟩/S_l`,
//!    whose gradient with respect to the window is exactly the tile's share of `∂L/∂x`
//!    (`D_l` constant, `S_l = C_l·H_l·W_l`); the shares are added into the full gradient.
//!
//! The cost is one extra forward pass plus the halo's overlap.

use crate::objective::Objective;
use crate::{tv_loss, Evaluation};
use nst_tensor::ndarray::{s, Array4, ArrayD, Axis, Ix4, Slice};
use nst_tensor::{Graph, Var};
use nst_vgg::{TileGeometry, Vgg, VggError};
use std::sync::Arc;

/// A rectangle of input pixels, `[top, bottom) × [left, right)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// One past the last row.
    pub bottom: usize,
    /// One past the last column.
    pub right: usize,
}

/// One tile: the pixels whose features it owns, and the window it reads to compute them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Owned pixels (aligned to the pooling grid, except at the image's bottom and right edge).
    pub owned: Rect,
    /// The input window: `owned` widened by the halo, clipped to the image.
    pub window: Rect,
}

/// The tiles of an `h×w` image for tiles of `side` pixels (rounded up to the pooling grid).
pub fn tiles(h: usize, w: usize, side: usize, geo: &TileGeometry) -> Vec<Tile> {
    let side = side.max(1).div_ceil(geo.align) * geo.align;
    let mut out = Vec::new();
    for top in (0..h).step_by(side) {
        for left in (0..w).step_by(side) {
            let owned = Rect {
                top,
                left,
                bottom: (top + side).min(h),
                right: (left + side).min(w),
            };
            let window = Rect {
                top: top.saturating_sub(geo.halo),
                left: left.saturating_sub(geo.halo),
                bottom: (owned.bottom + geo.halo).min(h),
                right: (owned.right + geo.halo).min(w),
            };
            out.push(Tile { owned, window });
        }
    }
    out
}

/// Where a tile's owned positions lie at a layer of `scale`: `(rows, cols)` offsets in the
/// window's map and in the full map, and the extent — `floor(end/scale) − start/scale`, so the
/// last tile ends where the full map does (pooling drops an odd last row).
#[derive(Clone, Copy, Debug)]
struct Owned {
    in_window: (usize, usize),
    in_full: (usize, usize),
    rows: usize,
    cols: usize,
}

fn owned_at(t: &Tile, scale: usize) -> Owned {
    let o = t.owned;
    Owned {
        in_window: (
            (o.top - t.window.top) / scale,
            (o.left - t.window.left) / scale,
        ),
        in_full: (o.top / scale, o.left / scale),
        rows: o.bottom / scale - o.top / scale,
        cols: o.right / scale - o.left / scale,
    }
}

/// The window `r` of a 1×3×H×W image.
fn window_of(x: &ArrayD<f32>, r: Rect) -> ArrayD<f32> {
    x.slice_axis(Axis(2), Slice::from(r.top..r.bottom))
        .slice_axis(Axis(3), Slice::from(r.left..r.right))
        .to_owned()
}

/// The part of a full 1×C×H×W map that `o` covers.
fn part_of(map: &ArrayD<f32>, o: &Owned) -> ArrayD<f32> {
    let (r, c) = o.in_full;
    map.slice_axis(Axis(2), Slice::from(r..r + o.rows))
        .slice_axis(Axis(3), Slice::from(c..c + o.cols))
        .to_owned()
}

/// Runs `visit(layer index, owned features, where)` for every tile of `image` and every layer of
/// `names` (whose tile geometry is `geo`) whose owned part is not empty, on constant tapes
/// (forward only).
fn for_each_owned(
    vgg: &Vgg,
    image: &ArrayD<f32>,
    names: &[String],
    geo: &TileGeometry,
    side: usize,
    stop: &dyn Fn() -> bool,
    mut visit: impl FnMut(usize, Var, &Owned),
) -> Result<Pass, VggError> {
    let (h, w) = (image.shape()[2], image.shape()[3]);
    for t in tiles(h, w, side, geo) {
        let g = Graph::new();
        let window = g.constant(Arc::new(window_of(image, t.window)));
        let Some(feats) = vgg.features_unless(window, names, stop)? else {
            return Ok(Pass::Stopped);
        };
        for (l, f) in feats.into_iter().enumerate() {
            let o = owned_at(&t, geo.scales[l]);
            if o.rows > 0 && o.cols > 0 {
                visit(l, f.crop(o.in_window.0, o.in_window.1, o.rows, o.cols), &o);
            }
            f.release();
        }
    }
    Ok(Pass::Complete)
}

/// Whether a pass over the tiles visited them all, or was stopped part-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Complete,
    Stopped,
}

/// The stop check of passes that always run to the end (the constant targets).
fn never() -> bool {
    false
}

/// The feature maps of `names` for a constant image, computed tile by tile and stitched.
pub(crate) fn tiled_features(
    vgg: &Vgg,
    image: &ArrayD<f32>,
    names: &[String],
    side: usize,
) -> Result<Vec<Arc<ArrayD<f32>>>, VggError> {
    let geo = vgg.tile_geometry(names)?;
    let (h, w) = (image.shape()[2], image.shape()[3]);
    let mut maps: Vec<Option<Array4<f32>>> = vec![None; names.len()];
    for_each_owned(vgg, image, names, &geo, side, &never, |l, f, o| {
        let v = f.value();
        let c = v.shape()[1];
        let map = maps[l]
            .get_or_insert_with(|| Array4::zeros((1, c, h / geo.scales[l], w / geo.scales[l])));
        let (r, col) = o.in_full;
        map.slice_mut(s![.., .., r..r + o.rows, col..col + o.cols])
            .assign(&v.view().into_dimensionality::<Ix4>().expect("a 4-D map"));
    })?;
    Ok(maps
        .into_iter()
        .map(|m| Arc::new(m.expect("every layer has owned positions").into_dyn()))
        .collect())
}

/// The raw Gram sums `Σ f_p f_pᵀ` (1×C×C, in f64) of `names` for a constant image, tile by tile.
fn tiled_raw_grams(
    vgg: &Vgg,
    image: &ArrayD<f32>,
    names: &[String],
    geo: &TileGeometry,
    side: usize,
) -> Result<Vec<ArrayD<f64>>, VggError> {
    let mut sums: Vec<Option<ArrayD<f64>>> = vec![None; names.len()];
    for_each_owned(vgg, image, names, geo, side, &never, |l, f, _| {
        add_f64(&mut sums[l], &f.gram().value());
    })?;
    Ok(sums
        .into_iter()
        .map(|s| s.expect("every layer has owned positions"))
        .collect())
}

fn add_f64(sum: &mut Option<ArrayD<f64>>, v: &ArrayD<f32>) {
    let v = v.mapv(f64::from);
    match sum {
        Some(s) => *s += &v,
        None => *sum = Some(v),
    }
}

/// A style image's normalised Gram matrices `G_l = Σ f_p f_pᵀ / (C·H·W)`, tile by tile.
pub(crate) fn tiled_grams(
    vgg: &Vgg,
    image: &ArrayD<f32>,
    names: &[String],
    side: usize,
) -> Result<Vec<Arc<ArrayD<f32>>>, VggError> {
    let geo = vgg.tile_geometry(names)?;
    let (h, w) = (image.shape()[2], image.shape()[3]);
    let raw = tiled_raw_grams(vgg, image, names, &geo, side)?;
    Ok(raw
        .into_iter()
        .zip(&geo.scales)
        .map(|(g, &s)| {
            let size = g.shape()[1] * (h / s) * (w / s);
            Arc::new(g.mapv(|v| (v / size as f64) as f32))
        })
        .collect())
}

impl Objective<'_> {
    /// [`Objective::evaluate`] tile by tile (see the module documentation): the same loss and
    /// gradient, up to rounding, with memory that follows tiles of `side` pixels. `stop` is
    /// asked before each layer and backward op of every tile of both passes; once it says yes
    /// the evaluation ends there and gives `None` (see [`Objective::evaluate_unless`]).
    pub(crate) fn evaluate_tiled(
        &self,
        x: &ArrayD<f32>,
        side: usize,
        stop: &dyn Fn() -> bool,
    ) -> Option<Evaluation> {
        let vgg = self.vgg;
        let names = &self.all_layers;
        let n_content = self.layers.content.len();
        let geo = vgg.tile_geometry(names).expect("layers validated in new");
        let (h, w) = (x.shape()[2], x.shape()[3]);
        let full_size = |l: usize, c: usize| c * (h / geo.scales[l]) * (w / geo.scales[l]);

        // First pass: content error sums and raw Gram sums over every tile's owned positions.
        let mut content_sums = vec![0.0f64; n_content];
        let mut grams: Vec<Option<ArrayD<f64>>> = vec![None; self.layers.style.len()];
        let first = for_each_owned(vgg, x, names, &geo, side, stop, |l, f, o| {
            if l < n_content {
                let target = part_of(&self.content_targets[l], o);
                let v = f.value();
                content_sums[l] += v
                    .iter()
                    .zip(target.iter())
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum::<f64>();
            } else {
                add_f64(&mut grams[l - n_content], &f.gram().value());
            }
        })
        .expect("layers and size validated in new");
        if first == Pass::Stopped {
            return None;
        }

        let content_sizes: Vec<f64> = (0..n_content)
            .map(|l| full_size(l, self.content_targets[l].shape()[1]) as f64)
            .collect();
        let content = content_sums
            .iter()
            .zip(&content_sizes)
            .map(|(s, n)| s / n)
            .sum::<f64>()
            / n_content as f64;
        // G_l, the style loss, and D_l = ∂L_s/∂G_l.
        let n_style = grams.len() as f64;
        let mut style_layers = Vec::new();
        let mut style_sizes = Vec::new();
        let mut dl_dg = Vec::new();
        for (k, (raw, a)) in grams.iter().zip(&self.style_targets).enumerate() {
            let c = a.shape()[1];
            let size = full_size(n_content + k, c) as f64;
            let raw = raw.as_ref().expect("every style layer has owned positions");
            let diff = raw.mapv(|v| v / size) - a.mapv(f64::from);
            style_layers.push(diff.mapv(|d| d * d).sum() / (c * c) as f64);
            dl_dg.push(Arc::new(
                diff.mapv(|d| (2.0 * d / (n_style * (c * c) as f64)) as f32),
            ));
            style_sizes.push(size);
        }

        // Second pass: each tile's share of the gradient, through the surrogate.
        let wts = self.weights;
        let mut grad = ArrayD::<f32>::zeros(x.raw_dim());
        for t in tiles(h, w, side, &geo) {
            let g = Graph::new();
            let window = g.param(window_of(x, t.window));
            let feats = vgg
                .features_unless(window, names, stop)
                .expect("validated in new")?;
            let mut terms: Vec<Var> = Vec::new();
            for (l, f) in feats.iter().enumerate() {
                let o = owned_at(&t, geo.scales[l]);
                if o.rows > 0 && o.cols > 0 {
                    let owned = f.crop(o.in_window.0, o.in_window.1, o.rows, o.cols);
                    terms.push(if l < n_content {
                        let p = g.constant(Arc::new(part_of(&self.content_targets[l], &o)));
                        let k = wts.content as f64 / (n_content as f64 * content_sizes[l]);
                        (owned - p).square().sum().scale(k as f32)
                    } else {
                        let s = l - n_content;
                        let d = g.constant(Arc::clone(&dl_dg[s]));
                        let k = wts.style as f64 / style_sizes[s];
                        (owned.gram() * d).sum().scale(k as f32)
                    });
                    owned.release();
                }
                f.release();
            }
            let Some(surrogate) = terms.into_iter().reduce(|a, b| a + b) else {
                continue;
            };
            if let Some(dw) = g.backward_unless(surrogate, stop)?.take(window) {
                let r = t.window;
                let mut rows = grad.slice_axis_mut(Axis(2), Slice::from(r.top..r.bottom));
                let mut dst = rows.slice_axis_mut(Axis(3), Slice::from(r.left..r.right));
                dst += &dw;
            }
        }

        // Total variation acts on the image itself: computed whole (three channels, cheap).
        let g = Graph::new();
        let image = g.param(x.clone());
        let ltv = tv_loss(image);
        let tv = ltv.item();
        if wts.tv != 0.0 {
            if let Some(d) = g.backward(ltv.scale(wts.tv)).take(image) {
                grad += &d;
            }
        }
        let style = (style_layers.iter().sum::<f64>() / n_style) as f32;
        let content = content as f32;
        Some(Evaluation {
            total: wts.content * content + wts.style * style + wts.tv * tv,
            content,
            style,
            tv,
            style_layers: style_layers.iter().map(|&v| v as f32).collect(),
            grad,
        })
    }
}
