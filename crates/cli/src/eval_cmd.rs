//! `nst eval`: the objective of any image — its loss terms and, optionally, its gradient — for
//! studying the algorithm and for comparing with another framework.

use crate::args::EvalArgs;
use crate::error::CliError;
use crate::setup::{self, StyleCache};
use crate::transfer_cmd::use_threads;
use nst_transfer::color::PreserveColors;
use nst_transfer::image_io::{self, OutputFormat};
use serde_json::json;

/// Runs `nst eval`: evaluates the objective at `--image`'s own size and prints the terms.
pub fn eval(args: EvalArgs) -> Result<(), CliError> {
    let o = &args.objective;
    setup::validate_objective(o)?;
    if let Some(path) = &args.grad_out {
        if !OutputFormat::from_path(path).is_ok_and(|f| f == OutputFormat::Npy) {
            return Err(format!("--grad-out {}: must be a .npy file", path.display()).into());
        }
    }
    use_threads(args.threads)?;
    let (vgg, _) = setup::load_network(&o.terms)?;

    let is_npy = args
        .image
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let limit = setup::decode_limit(None);
    let x = if is_npy {
        image_io::load_npy(&args.image, limit)
    } else {
        image_io::load(&args.image, limit).map(|img| image_io::to_variable(&img))
    }?;
    let (h, w) = (x.shape()[2] as u32, x.shape()[3] as u32);
    let content_img = image_io::load(&o.content, limit)?;
    let content = image_io::to_variable(&image_io::resize_exact(&content_img, w, h));
    let objective = setup::build_objective(
        o,
        PreserveColors::None,
        &vgg,
        (&content, &content_img),
        (w.max(h), args.tile.map(|t| t as usize)),
        &mut StyleCache::default(),
        limit,
    )?;
    let (weights, layers) = (objective.weights(), objective.layers());
    let e = objective.evaluate(&x);
    if !e.is_finite() {
        // An overflow in float32 (pixel values far outside [0,1], or huge weights): printing
        // `inf`/`NaN` (or JSON `null`) and writing a NaN gradient would pass garbage on silently.
        let reach = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        return Err(format!(
            "{}: the objective is not finite at this image (float32 overflow: its values reach \
             {reach:.3e} where images are in [0,1], with α={} β={} γ={}); nothing written",
            args.image.display(),
            weights.content,
            weights.style,
            weights.tv
        )
        .into());
    }

    if let Some(path) = &args.grad_out {
        image_io::save(path, &e.grad)?;
    }
    if args.json {
        let per_layer: serde_json::Map<String, serde_json::Value> = layers
            .style
            .iter()
            .zip(&e.style_layers)
            .map(|(name, v)| (name.clone(), json!(v)))
            .collect();
        let out = json!({
            "total": e.total, "content": e.content, "style": e.style, "tv": e.tv,
            "style_layers": per_layer,
        });
        println!("{out}");
    } else {
        println!(
            "{w}×{h}: total {:.6e} = {} × content {:.6e} + {} × style {:.6e} + {} × tv {:.6e}",
            e.total, weights.content, e.content, weights.style, e.style, weights.tv, e.tv
        );
        for (name, v) in layers.style.iter().zip(&e.style_layers) {
            println!("  style {name}: {v:.6e}");
        }
    }
    Ok(())
}
