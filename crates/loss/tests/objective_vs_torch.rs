//! The whole objective — content, style, TV, their weighted total and its gradient — against an
//! independent PyTorch implementation (`tools/torch_reference.py`), on the real VGG16.

mod common;

use common::{root, vgg16};
use nst_loss::{Layers, LossWeights, Objective};
use nst_tensor::ndarray::{ArrayD, IxDyn};
use std::path::Path;

fn read_npy(path: &Path) -> ArrayD<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), npy.into_vec::<f32>().unwrap()).unwrap()
}

/// An H×W×3 array as the 1×3×H×W image variable.
fn nchw(hwc: ArrayD<f32>) -> ArrayD<f32> {
    let s = hwc.shape().to_vec();
    let mut x = ArrayD::zeros(IxDyn(&[1, 3, s[0], s[1]]));
    for ((i, j, c), v) in hwc
        .into_dimensionality::<nst_tensor::ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
    {
        x[[0, c, i, j]] = *v;
    }
    x
}

/// An 8-bit PNG as the image variable, value/255.
fn png(path: &Path) -> ArrayD<f32> {
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let hwc = ArrayD::from_shape_vec(
        IxDyn(&[h as usize, w as usize, 3]),
        img.into_raw()
            .into_iter()
            .map(|v| v as f32 / 255.0)
            .collect(),
    )
    .unwrap();
    nchw(hwc)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn objective_and_gradient_match_pytorch() {
    let vgg = vgg16();
    let dir = root().join("tests/fixtures/gd_step");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let num = |k: &str| reference[k].as_f64().unwrap();
    let list = |k: &str| {
        reference[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let weights = LossWeights {
        content: num("content_weight") as f32,
        style: num("style_weight") as f32,
        tv: num("tv_weight") as f32,
    };
    let layers = Layers {
        content: list("content_layers"),
        style: list("style_layers"),
    };
    let objective = Objective::new(
        &vgg,
        &png(&dir.join("content.png")),
        &[png(&dir.join("style.png"))],
        &[1.0],
        layers,
        weights,
    )
    .unwrap();

    let e = objective.evaluate(&nchw(read_npy(&dir.join("x0.npy"))));
    for (name, ours) in [
        ("total", e.total),
        ("content", e.content),
        ("style", e.style),
        ("tv", e.tv),
    ] {
        let r = rel(ours as f64, num(name));
        assert!(
            r < 1e-4,
            "{name}: ours {ours} vs torch {} (relative {r:.1e})",
            num(name)
        );
    }
    let want = nchw(read_npy(&dir.join("grad.npy")));
    let diff = (&e.grad - &want).mapv(|v| (v as f64).powi(2)).sum().sqrt();
    let norm = want.mapv(|v| (v as f64).powi(2)).sum().sqrt();
    assert!(
        diff / norm < 1e-4,
        "gradient: ‖ours − torch‖/‖torch‖ = {:.1e}",
        diff / norm
    );
}
