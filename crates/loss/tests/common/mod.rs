//! Helpers shared by the objective's tests: the real VGG16 and deterministic images.
#![allow(dead_code)]

use nst_loss::Evaluation;
use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_vgg::Vgg;
use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fetched VGG16 weights; fails saying how to fetch them when they are missing.
pub fn vgg16() -> Vgg {
    let dir = root().join("weights/vgg16");
    Vgg::load(&dir).unwrap_or_else(|e| {
        panic!(
            "this test needs the real VGG16 weights in {}: {e}\n\
             fetch them with: python3 tools/fetch_weights.py",
            dir.display()
        )
    })
}

/// A deterministic smooth-plus-texture image in [0, 1].
pub fn image(h: usize, w: usize, seed: f32) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[1, 3, h, w]), |d| {
        let (c, i, j) = (d[1] as f32, d[2] as f32, d[3] as f32);
        0.5 + 0.25 * (0.13 * i * (1.0 + seed) + 0.07 * j + c).sin()
            + 0.2 * ((i * 7.0 + j * 13.0 + c * 5.0 + seed * 11.0).sin() * 43758.5).fract()
            - 0.1
    })
}

/// Asserts that `got` is the evaluation `want` up to rounding: every loss term and each style
/// layer's to 1e-5 relative, the gradient to 1e-4 of its largest entry. `what` names the case.
pub fn assert_same_evaluation(got: &Evaluation, want: &Evaluation, what: &str) {
    for (name, a, b) in [
        ("total", got.total, want.total),
        ("content", got.content, want.content),
        ("style", got.style, want.style),
        ("tv", got.tv, want.tv),
    ] {
        let rel = ((a - b) / b).abs();
        assert!(rel < 1e-5, "{what}: {name} {a} vs {b} ({rel:.1e})");
    }
    for (a, b) in got.style_layers.iter().zip(&want.style_layers) {
        assert!(((a - b) / b).abs() < 1e-5, "{what}: style layer {a} vs {b}");
    }
    assert_eq!(
        got.grad.shape(),
        want.grad.shape(),
        "{what}: gradient shape"
    );
    let scale = want.grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .grad
        .iter()
        .zip(want.grad.iter())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        scale > 0.0 && worst / scale < 1e-4,
        "{what}: gradient differs by {:.1e} of its max",
        worst / scale
    );
}
