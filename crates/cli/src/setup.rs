//! What `nst transfer`, `nst batch` and `nst eval` share: the network, the style images and
//! their Grams, and the objective, all from [`ObjectiveArgs`].

use crate::args::{ObjectiveArgs, PoolingArg, TermArgs};
use crate::error::CliError;
use image::Rgb32FImage;
use nst_loss::{Layers, LossWeights, Objective};
use nst_tensor::ndarray::ArrayD;
use nst_transfer::color::PreserveColors;
use nst_transfer::image_io;
use nst_vgg::{Pooling, Vgg};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads the network the options name (`--weights`, `--pooling`), and a line describing it.
pub fn load_network(o: &TermArgs) -> Result<(Vgg, String), CliError> {
    let dir = find_weights(o.weights.as_deref())?;
    let vgg = Vgg::load(&dir)?.with_pooling(match o.pooling {
        PoolingArg::Max => Pooling::Max,
        PoolingArg::Avg => Pooling::Avg,
    });
    let line = format!(
        "network: {} from {} — preprocessing {}",
        vgg.arch(),
        dir.display(),
        vgg.preprocessing().describe()
    );
    Ok((vgg, line))
}

/// The weights directory: `--weights DIR` if given; else the first place that holds weights
/// (a `manifest.json`, directly or in a `vgg19/` or `vgg16/` subdirectory, VGG19 first) among
/// `$NST_WEIGHTS`, `./weights`, and the per-user data directory
/// (`$XDG_DATA_HOME/nst/weights`, by default `~/.local/share/nst/weights`, where
/// `tools/fetch_weights.py --user` installs). So `nst` works from any directory. The error
/// lists every place it looked.
pub fn find_weights(given: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(env) = std::env::var_os("NST_WEIGHTS").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(env));
    }
    roots.push(PathBuf::from("weights"));
    if let Some(data) = user_data_dir() {
        roots.push(data.join("nst").join("weights"));
    }
    let mut looked = Vec::new();
    for root in &roots {
        for dir in [root.clone(), root.join("vgg19"), root.join("vgg16")] {
            if dir.join("manifest.json").is_file() {
                return Ok(dir);
            }
            looked.push(dir.display().to_string());
        }
    }
    Err(CliError::NoWeights {
        looked: looked.join(", "),
    })
}

/// `$XDG_DATA_HOME`, or `~/.local/share`.
fn user_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
}

/// How many bytes decoding one image file may use: half the memory budget (`--max-memory`, or
/// the default budget), so that a decoder bomb is refused instead of exhausting memory.
pub fn decode_limit(max_memory: Option<u64>) -> u64 {
    nst_transfer::memory::budget(max_memory).map_or(u64::MAX, |(b, _)| b / 2)
}

/// The longer side of the style images for an output whose longer side is `size`
/// (`--style-scale`).
pub fn style_side(o: &TermArgs, size: u32) -> u32 {
    ((size as f64 * o.style_scale as f64).round() as u32).max(1)
}

/// Style images decoded once and their Gram matrices computed once per size, so that
/// `nst batch` pays for each style once, not once per pair. When the colour setting makes the
/// styles depend on the content (`luminance`, `histogram`), Grams are computed per call.
#[derive(Default)]
pub struct StyleCache {
    images: HashMap<PathBuf, Rgb32FImage>,
    grams: HashMap<GramsKey, Grams>,
}

/// A style's raw Gram matrices, one per style layer.
type Grams = Vec<Arc<ArrayD<f32>>>;

/// What a style's Grams depend on besides the run's settings: the style, the output's longer
/// side, and the tile side they were computed with.
type GramsKey = (PathBuf, u32, Option<usize>);

impl StyleCache {
    /// The decoded style image at `path`.
    fn image(&mut self, path: &Path, limit: u64) -> Result<Rgb32FImage, CliError> {
        if let Some(img) = self.images.get(path) {
            return Ok(img.clone());
        }
        let img = image_io::load(path, limit)?;
        self.images.insert(path.to_path_buf(), img.clone());
        Ok(img)
    }

    /// The style at `path` as the optimisation sees it for `content` (the colour setting
    /// applied), resized for an output of longer side `side` (`--style-scale`).
    pub fn image_for(
        &mut self,
        (terms, colours): (&TermArgs, PreserveColors),
        path: &Path,
        content: &Rgb32FImage,
        side: u32,
        limit: u64,
    ) -> Result<Rgb32FImage, CliError> {
        let raw = self.image(path, limit)?;
        let seen = colours.prepare(content, &raw);
        Ok(image_io::resize_longer_side(&seen, style_side(terms, side)))
    }

    /// The raw Grams of the style at `path` for an output of longer side `side`.
    fn grams(
        &mut self,
        (terms, colours): (&TermArgs, PreserveColors),
        vgg: &Vgg,
        path: &Path,
        content: &Rgb32FImage,
        (side, tile): (u32, Option<usize>),
        limit: u64,
    ) -> Result<Grams, CliError> {
        let key = (path.to_path_buf(), side, tile);
        let reusable = !colours.styles_depend_on_content();
        if let Some(g) = self.grams.get(&key).filter(|_| reusable) {
            return Ok(g.clone());
        }
        let img = self.image_for((terms, colours), path, content, side, limit)?;
        let g =
            nst_loss::style_grams(vgg, &image_io::to_variable(&img), &terms.style_layers, tile)?;
        if reusable {
            self.grams.insert(key, g.clone());
        }
        Ok(g)
    }
}

/// The objective at `content` (1×3×H×W, as the optimisation sees it) for an output of longer
/// side `side`: the style images (through `styles`, prepared from `content_raw` as `colours`
/// says, resized by `--style-scale`) blended by `--style-blend` (default equal), the options'
/// weights and layers, evaluated in tiles of `tile` pixels if given. What `nst transfer`
/// (per stage), `nst batch` and `nst eval` build.
pub fn build_objective<'v>(
    o: &ObjectiveArgs,
    colours: PreserveColors,
    vgg: &'v Vgg,
    (content, content_raw): (&ArrayD<f32>, &Rgb32FImage),
    (side, tile): (u32, Option<usize>),
    styles: &mut StyleCache,
    limit: u64,
) -> Result<Objective<'v>, CliError> {
    let mut per_style = Vec::new();
    for path in &o.style {
        let how = (&o.terms, colours);
        per_style.push(styles.grams(how, vgg, path, content_raw, (side, tile), limit)?);
    }
    let blend = o
        .style_blend
        .clone()
        .unwrap_or_else(|| vec![1.0; o.style.len()]);
    let (weights, layers) = weights_and_layers(&o.terms, vgg);
    Ok(Objective::from_style_grams(
        vgg, content, &per_style, &blend, layers, weights, tile,
    )?)
}

/// The term weights (`--content-weight`, `--style-weight`, `--tv-weight`; defaults for the
/// network's input range) and the layers.
pub fn weights_and_layers(o: &TermArgs, vgg: &Vgg) -> (LossWeights, Layers) {
    let defaults = LossWeights::default_for(vgg.preprocessing());
    let weights = LossWeights {
        content: o.content_weight.unwrap_or(defaults.content),
        style: o.style_weight.unwrap_or(defaults.style),
        tv: o.tv_weight,
    };
    let layers = Layers {
        content: o.content_layers.clone(),
        style: o.style_layers.clone(),
    };
    (weights, layers)
}

/// Checks the objective's options before any work is done.
pub fn validate_objective(o: &ObjectiveArgs) -> Result<(), CliError> {
    validate_terms(&o.terms)?;
    if let Some(blend) = &o.style_blend {
        if blend.len() != o.style.len() {
            return Err(format!(
                "--style-blend has {} weights for {} --style images",
                blend.len(),
                o.style.len()
            )
            .into());
        }
        for &w in blend {
            finite_nonneg("each --style-blend weight", w)?;
        }
        if blend.iter().map(|&w| w as f64).sum::<f64>() <= 0.0 {
            return Err("--style-blend weights must not all be zero".into());
        }
    }
    Ok(())
}

/// Checks the network and term options before any work is done.
pub fn validate_terms(o: &TermArgs) -> Result<(), CliError> {
    if !(o.style_scale.is_finite() && o.style_scale > 0.0) {
        return Err(format!("--style-scale must be positive, got {}", o.style_scale).into());
    }
    for (name, v) in [
        ("--content-weight", o.content_weight),
        ("--style-weight", o.style_weight),
        ("--tv-weight", Some(o.tv_weight)),
    ] {
        if let Some(v) = v {
            finite_nonneg(name, v)?;
        }
    }
    if o.content_layers.is_empty() || o.style_layers.is_empty() {
        return Err("--content-layers and --style-layers need at least one layer each".into());
    }
    for (option, layers) in [
        ("--content-layers", &o.content_layers),
        ("--style-layers", &o.style_layers),
    ] {
        // A layer listed twice would silently count double in the mean over layers: a typo.
        let repeated = (1..layers.len()).find(|&i| layers[..i].contains(&layers[i]));
        if let Some(name) = repeated.map(|i| &layers[i]) {
            return Err(format!("{option} lists {name} twice").into());
        }
    }
    Ok(())
}

fn finite_nonneg(name: &str, v: f32) -> Result<(), CliError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a finite number ≥ 0, got {v}").into())
    }
}
