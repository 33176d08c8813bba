//! The error policy: a shape mismatch panics at the op's entry with the op's name and the shapes
//! (never as an index panic inside a kernel).

use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_tensor::Graph;
use std::sync::Arc;

fn zeros(shape: &[usize]) -> ArrayD<f32> {
    ArrayD::zeros(IxDyn(shape))
}

#[test]
#[should_panic(expected = "conv2d: input [1, 3, 5, 5] and weight [4, 2, 3, 3] disagree")]
fn conv_channel_mismatch() {
    let g = Graph::new();
    let x = g.param(zeros(&[1, 3, 5, 5]));
    let _ = x.conv2d(g.constant(Arc::new(zeros(&[4, 2, 3, 3]))), None, 1);
}

#[test]
#[should_panic(expected = "sub: shapes differ: [1, 2, 3] vs [1, 2, 4]")]
fn elementwise_mismatch() {
    let g = Graph::new();
    let _ = g.param(zeros(&[1, 2, 3])) - g.param(zeros(&[1, 2, 4]));
}

#[test]
#[should_panic(expected = "matmul: shapes [2, 3] and [2, 3] do not multiply")]
fn matmul_mismatch() {
    let g = Graph::new();
    let _ = g.param(zeros(&[2, 3])).matmul(g.param(zeros(&[2, 3])));
}

#[test]
#[should_panic(expected = "gram: expected an N×C×H×W tensor, got shape [3, 4]")]
fn gram_needs_four_axes() {
    let g = Graph::new();
    let _ = g.param(zeros(&[3, 4])).gram();
}

#[test]
#[should_panic(expected = "backward: the loss must be a scalar, got shape [2]")]
fn backward_needs_a_scalar() {
    let g = Graph::new();
    let x = g.param(zeros(&[2]));
    let _ = g.backward(x.square());
}
