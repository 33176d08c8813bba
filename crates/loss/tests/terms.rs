//! The loss terms on tiny hand-checkable inputs.

use nst_loss::{blend_grams, content_loss, gram_matrix, style_loss, tv_loss};
use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_tensor::Graph;
use std::sync::Arc;

fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

#[test]
fn tv_is_squared_neighbour_differences_over_3hw() {
    let g = Graph::new();
    // The first channel's rows are 0, 1, 3 (vertical differences 1 and 2, none horizontal).
    let x = g.param(arr(
        &[1, 3, 3, 3],
        [
            vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0],
            vec![0.0; 18],
        ]
        .concat(),
    ));
    // Σ (dh)² = 3·1² + 3·2² = 15; no horizontal differences; / (3·3·3) = 15/27.
    assert!((tv_loss(x).item() - 15.0 / 27.0).abs() < 1e-6);
}

#[test]
fn content_and_style_are_means_over_elements_then_layers() {
    let g = Graph::new();
    let f1 = g.param(arr(&[1, 1, 1, 2], vec![1.0, 3.0]));
    let f2 = g.param(arr(&[1, 1, 2, 2], vec![0.0, 0.0, 0.0, 4.0]));
    let t1 = Arc::new(arr(&[1, 1, 1, 2], vec![0.0, 0.0]));
    let t2 = Arc::new(arr(&[1, 1, 2, 2], vec![0.0; 4]));
    // Layer 1: (1 + 9)/2 = 5; layer 2: 16/4 = 4; mean 4.5.
    assert!((content_loss(&[f1, f2], &[t1, t2]).item() - 4.5).abs() < 1e-6);
    // The engine's Gram is the plain sum 1 + 9 = 10; the loss's divides by C·H·W = 1·1·2.
    assert_eq!(f1.gram().value()[[0, 0, 0]], 10.0);
    assert_eq!(gram_matrix(f1).value()[[0, 0, 0]], 5.0);
    // Gram of f1: (1 + 9)/(1·1·2) = 5, target 1: (5 − 1)² = 16.
    let a = Arc::new(arr(&[1, 1, 1], vec![1.0]));
    assert!((style_loss(&[f1], &[a]).item() - 16.0).abs() < 1e-5);
}

#[test]
fn blend_weights_are_normalised() {
    let a = Arc::new(arr(&[1, 1, 1], vec![2.0]));
    let b = Arc::new(arr(&[1, 1, 1], vec![6.0]));
    // 0.7 and 0.3 given as 7 and 3: 0.7·2 + 0.3·6 = 3.2.
    let blended = blend_grams(&[Arc::clone(&a), Arc::clone(&b)], &[7.0, 3.0]);
    assert!((blended[[0, 0, 0]] - 3.2).abs() < 1e-6);
    // Weights whose f32 sum overflows still blend half and half (was: ∞ total, style dropped).
    let huge = blend_grams(&[a, b], &[3e38, 3e38]);
    assert!((huge[[0, 0, 0]] - 4.0).abs() < 1e-6, "{}", huge[[0, 0, 0]]);
}
