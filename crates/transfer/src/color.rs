//! Colour preservation (Gatys, Bethge, Hertzmann & Shechtman, 2016, "Preserving color in neural
//! artistic style transfer"): three ways to keep the content's colours, chosen by
//! `--preserve-colors` ([`PreserveColors`]).
//!
//! - `post`: after the transfer, the result's luminance `Y` is combined with the content's
//!   chrominance `I`, `Q` in the YIQ colour space ([`keep_content_colors`]; the classic
//!   implementation's `-original_colors 1`).
//! - `luminance`: the transfer itself runs on luminance only. Content and styles become grey
//!   images of their luminance, each style's luminance first matched to the content's mean and
//!   standard deviation ([`match_luminance`]); the result's luminance then gets the content's
//!   `I`, `Q` as in `post`.
//! - `histogram`: before the transfer, each style's pixels are mapped linearly so that their RGB
//!   mean and covariance equal the content's ([`match_color_histogram`]).

use image::Rgb32FImage;
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

/// How the content's colours are kept (`--preserve-colors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreserveColors {
    /// Not at all: the output takes the style's colours.
    None,
    /// The result's luminance with the content's chrominance, after the transfer.
    Post,
    /// Luminance-only transfer, then the content's chrominance.
    Luminance,
    /// The styles' colour mean and covariance matched to the content's, before the transfer.
    Histogram,
}

impl PreserveColors {
    /// Whether the style images are changed according to the content (so a style's Gram
    /// targets depend on the content too).
    pub fn styles_depend_on_content(self) -> bool {
        matches!(self, PreserveColors::Luminance | PreserveColors::Histogram)
    }

    /// Whether the written image gets the content's chrominance.
    pub fn recolours_output(self) -> bool {
        matches!(self, PreserveColors::Post | PreserveColors::Luminance)
    }

    /// The images the optimisation sees for this setting: the content and each style,
    /// transformed as the setting says (or as they are).
    pub fn prepare(self, content: &Rgb32FImage, style: &Rgb32FImage) -> Rgb32FImage {
        match self {
            PreserveColors::None | PreserveColors::Post => style.clone(),
            PreserveColors::Luminance => match_luminance(style, content),
            PreserveColors::Histogram => match_color_histogram(style, content),
        }
    }

    /// The content image the optimisation sees: its luminance under `luminance`, else itself.
    pub fn prepare_content(self, content: &Rgb32FImage) -> Rgb32FImage {
        match self {
            PreserveColors::Luminance => grey(content, |y| y),
            _ => content.clone(),
        }
    }
}

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

/// The YIQ coordinates of one RGB pixel.
pub fn rgb_to_yiq(rgb: [f32; 3]) -> [f32; 3] {
    RGB_TO_YIQ.map(|row| (0..3).map(|k| row[k] * rgb[k]).sum())
}

/// The style as a grey image whose luminance `Y` has the content's mean and standard deviation:
/// `Y' = μ_c + σ_c/σ_s · (Y_s − μ_s)` (Gatys et al. 2016, §2). A flat style (`σ_s = 0`) becomes
/// the content's mean.
pub fn match_luminance(style: &Rgb32FImage, content: &Rgb32FImage) -> Rgb32FImage {
    let (mc, sc) = luminance_stats(content);
    let (ms, ss) = luminance_stats(style);
    let gain = if ss > 0.0 { sc / ss } else { 0.0 };
    grey(style, |y| (mc + gain * (y as f64 - ms)) as f32)
}

/// Mean and standard deviation of an image's luminance.
fn luminance_stats(img: &Rgb32FImage) -> (f64, f64) {
    let n = (img.width() as f64 * img.height() as f64).max(1.0);
    let ys = img.pixels().map(|p| rgb_to_yiq(p.0)[0] as f64);
    let (sum, sum_sq) = ys.fold((0.0, 0.0), |(s, q), y| (s + y, q + y * y));
    let mean = sum / n;
    (mean, (sum_sq / n - mean * mean).max(0.0).sqrt())
}

/// A grey image (`R = G = B`) of `f(Y)`, `Y` the luminance of `img`.
fn grey(img: &Rgb32FImage, f: impl Fn(f32) -> f32) -> Rgb32FImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let y = f(rgb_to_yiq(p.0)[0]);
        p.0 = [y, y, y];
    }
    out
}

/// The style's pixels mapped by `p' = A·(p − μ_s) + μ_c`, where `A = Σ_c^{1/2} Σ_s^{−1/2}`, so
/// that their mean is the content's `μ_c` and their covariance `A Σ_s Aᵀ` the content's `Σ_c`.
///
/// Of the matrices that do this, Gatys et al. (2016) compare the Cholesky one
/// (`A = L_c L_s⁻¹`) and this one, built from the symmetric square roots (as in Image
/// Analogies' colour transfer). We use the symmetric one: it does not depend on the order of
/// the channels (Cholesky factors do) and it is the transform closest to the identity, so it
/// changes the style's colours least. The values are not clamped to [0, 1]: clamping would
/// undo the match, and the network takes any value. A style of one or two colours has a
/// singular `Σ_s`; its zero directions are left alone (its eigenvalues are floored at
/// [`COVARIANCE_FLOOR`]).
pub fn match_color_histogram(style: &Rgb32FImage, content: &Rgb32FImage) -> Rgb32FImage {
    let (mc, cc) = color_stats(content);
    let (ms, cs) = color_stats(style);
    let a = mat_mul(&sym_power(&cc, 0.5), &sym_power(&cs, -0.5));
    let mut out = style.clone();
    for p in out.pixels_mut() {
        let d = [0, 1, 2].map(|k| p.0[k] as f64 - ms[k]);
        p.0 = [0, 1, 2].map(|r| (mc[r] + (0..3).map(|k| a[r][k] * d[k]).sum::<f64>()) as f32);
    }
    out
}

/// Eigenvalues of a covariance below this are treated as this (a `1e-3` standard deviation,
/// a quarter of an 8-bit step), so a singular style covariance is not inverted.
pub const COVARIANCE_FLOOR: f64 = 1e-6;

/// An image's RGB mean `μ` and covariance `Σ = mean((p − μ)(p − μ)ᵀ)`.
pub fn color_stats(img: &Rgb32FImage) -> ([f64; 3], [[f64; 3]; 3]) {
    let n = (img.width() as f64 * img.height() as f64).max(1.0);
    let mut mean = [0.0; 3];
    for p in img.pixels() {
        (0..3).for_each(|k| mean[k] += p.0[k] as f64 / n);
    }
    let mut cov = [[0.0; 3]; 3];
    for p in img.pixels() {
        let d = [0, 1, 2].map(|k| p.0[k] as f64 - mean[k]);
        for r in 0..3 {
            for c in 0..3 {
                cov[r][c] += d[r] * d[c] / n;
            }
        }
    }
    (mean, cov)
}

type Mat3 = [[f64; 3]; 3];

fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            out[r][c] = (0..3).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    out
}

/// `M^p` of a symmetric positive semi-definite 3×3 matrix: `V·diag(λ^p)·Vᵀ` from its
/// eigen-decomposition, eigenvalues floored at [`COVARIANCE_FLOOR`].
fn sym_power(m: &Mat3, p: f64) -> Mat3 {
    let (values, vectors) = jacobi_eigen(m);
    let mut out = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            out[r][c] = (0..3)
                .map(|k| vectors[r][k] * values[k].max(COVARIANCE_FLOOR).powf(p) * vectors[c][k])
                .sum();
        }
    }
    out
}

/// Eigenvalues and eigenvectors (as columns) of a symmetric 3×3 matrix by cyclic Jacobi
/// rotations: each rotation zeroes one off-diagonal entry; a few sweeps reach machine precision.
fn jacobi_eigen(m: &Mat3) -> ([f64; 3], Mat3) {
    let mut a = *m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off <= 1e-30 * (a[0][0].abs() + a[1][1].abs() + a[2][2].abs()).max(1e-300) {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            // The rotation angle θ with tan 2θ = 2a_pq / (a_qq − a_pp), the smaller root.
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
            // a ← Jᵀ a J, v ← v J, with J the rotation in the (p, q) plane.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = [0, 1, 2].map(|k| c * rp[k] - s * rq[k]);
            a[q] = [0, 1, 2].map(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A random image whose channels are correlated (as photographs' are).
    fn image(seed: u64, w: u32, h: u32, tint: [f32; 3]) -> Rgb32FImage {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Rgb32FImage::from_fn(w, h, |_, _| {
            let base: f32 = rng.random();
            image::Rgb([0, 1, 2].map(|k| tint[k] * base + 0.3 * rng.random::<f32>()))
        })
    }

    #[test]
    fn histogram_matching_gives_the_content_mean_and_covariance() {
        let content = image(1, 40, 30, [0.9, 0.5, 0.2]);
        let style = image(2, 50, 20, [0.1, 0.4, 0.8]);
        let (mc, cc) = color_stats(&content);
        let (ms, cs) = color_stats(&style);
        assert!(
            (0..3).any(|k| (mc[k] - ms[k]).abs() > 0.1),
            "test images too alike"
        );
        assert!((0..3).any(|k| (cc[k][k] - cs[k][k]).abs() > 1e-2));
        let (mm, cm) = color_stats(&match_color_histogram(&style, &content));
        for r in 0..3 {
            assert!(
                (mm[r] - mc[r]).abs() < 1e-3,
                "mean {r}: {} vs {}",
                mm[r],
                mc[r]
            );
            for c in 0..3 {
                assert!(
                    (cm[r][c] - cc[r][c]).abs() < 1e-3 * cc[r][r].max(cc[c][c]),
                    "cov {r}{c}: {} vs {}",
                    cm[r][c],
                    cc[r][c]
                );
            }
        }
    }

    #[test]
    fn histogram_matching_is_the_identity_on_the_content_itself() {
        let content = image(3, 20, 20, [0.6, 0.3, 0.7]);
        let same = match_color_histogram(&content, &content);
        for (a, b) in same.pixels().zip(content.pixels()) {
            (0..3).for_each(|k| assert!((a.0[k] - b.0[k]).abs() < 1e-5));
        }
    }

    #[test]
    fn a_flat_style_does_not_blow_up() {
        let content = image(4, 16, 16, [0.6, 0.3, 0.7]);
        let flat = Rgb32FImage::from_pixel(8, 8, image::Rgb([0.2, 0.2, 0.2]));
        let m = match_color_histogram(&flat, &content);
        let (mean, _) = color_stats(&content);
        for p in m.pixels() {
            (0..3).for_each(|k| assert!((p.0[k] as f64 - mean[k]).abs() < 1e-5));
        }
        let l = match_luminance(&flat, &content);
        assert!(l.pixels().all(|p| p.0.iter().all(|v| v.is_finite())));
    }

    #[test]
    fn jacobi_reconstructs_the_matrix() {
        let m = [[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 0.7]];
        let root = sym_power(&m, 0.5);
        let back = mat_mul(&root, &root);
        for r in 0..3 {
            for c in 0..3 {
                assert!((back[r][c] - m[r][c]).abs() < 1e-12, "{back:?}");
            }
        }
        let inv = mat_mul(&sym_power(&m, -1.0), &m);
        for r in 0..3 {
            for c in 0..3 {
                let id = if r == c { 1.0 } else { 0.0 };
                assert!((inv[r][c] - id).abs() < 1e-12, "{inv:?}");
            }
        }
    }

    #[test]
    fn luminance_matching_gives_a_grey_style_with_the_content_statistics() {
        let content = image(5, 30, 30, [0.2, 0.9, 0.4]);
        let style = image(6, 25, 35, [0.9, 0.1, 0.5]);
        let m = match_luminance(&style, &content);
        assert!(m.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
        let (mc, sc) = luminance_stats(&content);
        let (mm, sm) = luminance_stats(&m);
        assert!(
            (mm - mc).abs() < 1e-4 && (sm - sc).abs() < 1e-4,
            "{mm} {sm} vs {mc} {sc}"
        );
    }

    #[test]
    fn kept_colours_have_the_content_chrominance_and_the_result_luminance() {
        let to_var = |img: &Rgb32FImage| crate::image_io::to_variable(img);
        let result = to_var(&image(7, 12, 9, [0.5, 0.5, 0.5]));
        let content = to_var(&image(8, 12, 9, [0.9, 0.2, 0.4]));
        let out = keep_content_colors(&result, &content);
        for i in 0..9 {
            for j in 0..12 {
                let px = |x: &ArrayD<f32>| [0, 1, 2].map(|c| x[[0, c, i, j]]);
                let (o, r, c) = (
                    rgb_to_yiq(px(&out)),
                    rgb_to_yiq(px(&result)),
                    rgb_to_yiq(px(&content)),
                );
                assert!((o[0] - r[0]).abs() < 1e-3, "Y");
                assert!(
                    (o[1] - c[1]).abs() < 1e-3 && (o[2] - c[2]).abs() < 1e-3,
                    "IQ"
                );
            }
        }
    }
}
