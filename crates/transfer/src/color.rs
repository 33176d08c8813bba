//! Colour preservation (Gatys, Bethge, Hertzmann & Shechtman, 2016, "Preserving color in neural
//! artistic style transfer"): keep the content's colours by transferring luminance only.
//!
//! The result's luminance `Y` is combined with the content's chrominance `I`, `Q` in the YIQ
//! colour space (as the classic implementation's `-original_colors 1` does), then converted
//! back to RGB.

use nst_tensor::ndarray::{ArrayD, Axis};

/// RGB → YIQ (NTSC).
const RGB_TO_YIQ: [[f32; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [0.595_716, -0.274_453, -0.321_263],
    [0.211_456, -0.522_591, 0.311_135],
];

/// YIQ → RGB, the inverse of [`RGB_TO_YIQ`].
const YIQ_TO_RGB: [[f32; 3]; 3] = [
    [1.0, 0.956_3, 0.621_0],
    [1.0, -0.272_1, -0.647_4],
    [1.0, -1.107_0, 1.704_6],
];

/// The result's luminance with the content's chrominance, both 1×3×H×W RGB of the same size.
pub fn keep_content_colors(result: &ArrayD<f32>, content: &ArrayD<f32>) -> ArrayD<f32> {
    assert_eq!(
        result.shape(),
        content.shape(),
        "keep_content_colors: sizes differ"
    );
    let mut out = result.clone();
    let (r, c) = (
        result.index_axis(Axis(0), 0),
        content.index_axis(Axis(0), 0),
    );
    let (h, w) = (r.shape()[1], r.shape()[2]);
    for i in 0..h {
        for j in 0..w {
            let project = |img: &nst_tensor::ndarray::ArrayViewD<f32>, row: usize| {
                (0..3)
                    .map(|ch| RGB_TO_YIQ[row][ch] * img[[ch, i, j]])
                    .sum::<f32>()
            };
            let yiq = [project(&r, 0), project(&c, 1), project(&c, 2)];
            for ch in 0..3 {
                out[[0, ch, i, j]] = (0..3).map(|k| YIQ_TO_RGB[ch][k] * yiq[k]).sum();
            }
        }
    }
    out
}
