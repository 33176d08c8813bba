//! A tall image is evaluated transposed (as the wide image it is transposed, on which the
//! convolutions run faster) with the same result as upright: the loss terms to 1e-5 relative,
//! the gradient to 1e-4 of its largest entry, on the real VGG16, at odd sizes.

mod common;

use common::{assert_same_evaluation, image, vgg16};
use nst_loss::{runs_transposed, transpose_hw, Layers, LossWeights, Objective};
use nst_tensor::ndarray::{ArrayD, IxDyn};

#[test]
fn transpose_hw_swaps_the_last_two_axes() {
    // 2 images of 2 planes of 3×37 (more than one block of 16 each way, not a multiple of it).
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 2, 3, 37]), |d| {
        (d[0] * 10000 + d[1] * 1000 + d[2] * 100 + d[3]) as f32
    });
    let t = transpose_hw(&x);
    assert_eq!(t.shape(), &[2, 2, 37, 3]);
    for (idx, v) in x.indexed_iter() {
        assert_eq!(t[[idx[0], idx[1], idx[3], idx[2]]], *v);
    }
    assert_eq!(transpose_hw(&t), x);
}

#[test]
fn only_tall_images_evaluated_whole_run_transposed() {
    assert!(runs_transposed(97, 75, None));
    assert!(!runs_transposed(75, 97, None));
    assert!(!runs_transposed(80, 80, None));
    assert!(!runs_transposed(97, 75, Some(48)));
}

#[test]
fn a_tall_image_evaluated_transposed_equals_its_upright_evaluation() {
    let vgg = vgg16();
    let weights = LossWeights {
        tv: 3.0,
        ..LossWeights::default_for(vgg.preprocessing())
    };
    let (h, w) = (97, 75);
    let (content, x) = (image(h, w, 0.0), image(h, w, 2.0));
    let styles = [image(61, 83, 1.0)];
    let make =
        || Objective::new(&vgg, &content, &styles, &[1.0], Layers::default(), weights).unwrap();
    let transposed = make();
    assert!(transposed.is_transposed());
    let upright = make().upright();
    assert!(!upright.is_transposed());
    let (a, b) = (transposed.evaluate(&x), upright.evaluate(&x));
    assert!(b.content > 0.0 && b.style > 0.0 && b.tv > 0.0);
    assert_same_evaluation(&a, &b, "transposed against upright");
}
