//! Coarse-to-fine stages and the evaluation budget split.

use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_transfer::image_io::upsample_variable;
use nst_transfer::scales::{next_stage_start, split_budget, Scales};

#[test]
fn auto_halves_down_to_about_256_px() {
    assert_eq!(Scales::Auto.stages(512), Ok(vec![256, 512]));
    assert_eq!(Scales::Auto.stages(2048), Ok(vec![256, 512, 1024, 2048]));
    assert_eq!(Scales::Auto.stages(384), Ok(vec![192, 384]));
    assert_eq!(Scales::Auto.stages(256), Ok(vec![256]));
    assert_eq!(Scales::None.stages(512), Ok(vec![512]));
}

#[test]
fn listed_scales_end_at_the_output_size_and_at_most_double() {
    let list = Scales::parse("512,256").unwrap();
    assert_eq!(list.stages(1024), Ok(vec![256, 512, 1024]));
    assert_eq!(list.stages(512), Ok(vec![256, 512]));
    assert!(list.stages(300).unwrap_err().contains("larger than --size"));
    let gap = Scales::parse("100").unwrap().stages(512).unwrap_err();
    assert!(gap.contains("more than a doubling"), "{gap}");
    for bad in ["", "0", "abc", "256,", "-5"] {
        assert!(Scales::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn each_stage_gets_twice_the_next_and_the_total_is_kept() {
    assert_eq!(split_budget(300, 1), vec![300]);
    assert_eq!(split_budget(300, 2), vec![200, 100]);
    assert_eq!(split_budget(70, 3), vec![40, 20, 10]);
    // One each, then 7·4/7, 7·2/7, 7/7.
    assert_eq!(split_budget(10, 3), vec![5, 3, 2]);
    for (evals, stages) in [(7, 3), (1000, 4), (5, 5)] {
        let s = split_budget(evals, stages);
        assert_eq!(s.iter().sum::<usize>(), evals);
        assert!(s.iter().all(|&v| v >= 1) && s.windows(2).all(|w| w[0] >= w[1]));
    }
}

#[test]
fn upsampling_keeps_a_constant_image_and_reaches_the_size() {
    let x = ArrayD::from_elem(IxDyn(&[1, 3, 5, 7]), 0.25f32);
    let y = upsample_variable(&x, 14, 10);
    assert_eq!(y.shape(), &[1, 3, 10, 14]);
    assert!(y.iter().all(|&v| (v - 0.25).abs() < 1e-6));
    // Values outside [0, 1] survive (the variable is never clamped while optimising).
    let mut wide = x.mapv(|v| v * 8.0);
    wide[[0, 1, 2, 3]] = -1.5;
    let z = upsample_variable(&wide, 14, 10);
    let (lo, hi) = z
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    assert!(
        lo < -0.5 && hi > 1.9 && lo >= -1.5 - 1e-4 && hi <= 2.0 + 1e-4,
        "{lo} {hi}"
    );
}

/// A deterministic "sharp" image: a checkerboard of 1-pixel squares over a gradient, detail no
/// upsampling could invent.
fn sharp(w: usize, h: usize) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[1, 3, h, w]), |d| {
        let (c, y, x) = (d[1], d[2], d[3]);
        0.2 + 0.05 * c as f32 + 0.3 * x as f32 / w as f32 + 0.2 * ((x + y) % 2) as f32
    })
}

#[test]
fn the_next_stage_keeps_the_contents_detail_and_adds_the_upsampled_change() {
    let (fine, coarse) = (sharp(14, 10), sharp(7, 5));
    // A stage that changed nothing hands on the sharp content itself, not a blurred copy.
    let same = next_stage_start(&coarse, &coarse, &fine);
    assert_eq!(same.shape(), fine.shape());
    assert!(same.iter().zip(&fine).all(|(a, b)| (a - b).abs() < 1e-6));
    // A uniform change of +0.1 arrives as +0.1 everywhere on top of the content.
    let shifted = coarse.mapv(|v| v + 0.1);
    let next = next_stage_start(&shifted, &coarse, &fine);
    assert!(next
        .iter()
        .zip(&fine)
        .all(|(a, b)| (a - b - 0.1).abs() < 1e-5));
    // The plain upsampling of the result would have lost the checkerboard.
    let plain = upsample_variable(&shifted, 14, 10);
    let err = plain
        .iter()
        .zip(&fine)
        .map(|(a, b)| (a - b - 0.1).abs())
        .fold(0.0f32, f32::max);
    assert!(err > 0.05, "{err}");
}
