//! `--original-colors`: the result's luminance with the content's chrominance.

use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_transfer::color::keep_content_colors;

/// A 1×3×1×2 image from two RGB pixels.
fn image(p: [[f32; 3]; 2]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[1, 3, 1, 2]), |d| p[d[3]][d[1]])
}

fn luma(x: &ArrayD<f32>, j: usize) -> f32 {
    0.299 * x[[0, 0, 0, j]] + 0.587 * x[[0, 1, 0, j]] + 0.114 * x[[0, 2, 0, j]]
}

#[test]
fn luminance_from_the_result_colour_from_the_content() {
    let result = image([[0.2, 0.2, 0.2], [0.9, 0.9, 0.9]]); // greys: no chrominance
    let content = image([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]); // red, blue
    let out = keep_content_colors(&result, &content);
    for j in 0..2 {
        assert!(
            (luma(&out, j) - luma(&result, j)).abs() < 1e-3,
            "pixel {j}: luminance changed"
        );
    }
    // Pixel 0 became reddish (R > G, B), pixel 1 bluish (B > R, G).
    assert!(
        out[[0, 0, 0, 0]] > out[[0, 1, 0, 0]] + 0.1 && out[[0, 0, 0, 0]] > out[[0, 2, 0, 0]] + 0.1
    );
    assert!(
        out[[0, 2, 0, 1]] > out[[0, 0, 0, 1]] + 0.1 && out[[0, 2, 0, 1]] > out[[0, 1, 0, 1]] + 0.1
    );
    // A result equal to the content comes back unchanged.
    let same = keep_content_colors(&content, &content);
    assert!(same
        .iter()
        .zip(content.iter())
        .all(|(a, b)| (a - b).abs() < 1e-3));
}
