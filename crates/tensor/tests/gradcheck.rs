//! Every op's backward against central finite differences, on awkward shapes.

mod common;

use common::{check_grads, numeric_grad, random, rel_err, rng, well_separated, GRAD_TOL};
use ndarray::ArrayD;
use nst_tensor::{Fused, Graph, Var};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A convolution's parameters: a random map of shape `x`, filters of shape `w`, their bias.
fn conv_inputs(r: &mut ChaCha8Rng, x: &[usize], w: &[usize]) -> [ArrayD<f32>; 3] {
    [random(r, x), random(r, w), random(r, &[w[0]])]
}

fn conv_case(seed: u64, x: &[usize], w: &[usize], pad: usize) {
    let inputs = conv_inputs(&mut rng(seed), x, w);
    check_grads(&inputs, &|v| v[0].conv2d(v[1], Some(v[2]), pad));
}

#[test]
fn conv2d_3x3_pad1_odd_sizes() {
    // 3 input channels, like conv1_1: both passes by direct summation.
    conv_case(1, &[1, 3, 5, 7], &[4, 3, 3, 3], 1);
}

#[test]
fn conv2d_one_channel_batch_of_two() {
    conv_case(2, &[2, 1, 6, 3], &[2, 1, 3, 3], 1);
}

#[test]
fn conv2d_one_by_one_map() {
    conv_case(3, &[1, 2, 1, 1], &[3, 2, 3, 3], 1);
}

#[test]
fn conv2d_kernel_larger_than_map() {
    conv_case(4, &[1, 2, 2, 3], &[2, 2, 5, 5], 2);
}

#[test]
fn conv2d_no_padding_and_1x1_kernel() {
    conv_case(5, &[1, 2, 5, 6], &[3, 2, 3, 3], 0);
    conv_case(6, &[1, 3, 4, 5], &[2, 3, 1, 1], 0);
}

#[test]
fn conv2d_sixteen_input_channels() {
    // From 16 input channels the input gradient runs as a convolution with flipped filters (by
    // im2col here: 5 output channels are too many for direct summation, too few for Winograd).
    conv_case(9, &[1, 16, 3, 4], &[5, 16, 3, 3], 1);
}

#[test]
fn conv2d_wide_enough_for_winograd() {
    // 32 channels in and out: the forward pass and the input gradient (the flipped convolution)
    // both run by Winograd F(4×4, 3×3); the 5×6 map is smaller than two tiles each way.
    conv_case(10, &[1, 32, 5, 6], &[32, 32, 3, 3], 1);
}

/// A convolution with its filters applied transposed, checked against finite differences for
/// the map, the filters (whose gradient is transposed back to the stored layout) and the bias:
/// on direct summation (3 input channels), im2col (16 → 5, the input gradient by the flipped
/// filters) and Winograd (32 → 32, both passes), on maps that are not square.
#[test]
fn conv2d_with_transposed_filters() {
    for (seed, x, w) in [
        (30, &[1, 3, 5, 7][..], &[4, 3, 3, 3][..]),
        (31, &[1, 16, 3, 4][..], &[5, 16, 3, 3][..]),
        (32, &[1, 32, 5, 6][..], &[32, 32, 3, 3][..]),
    ] {
        let inputs = conv_inputs(&mut rng(seed), x, w);
        check_grads(&inputs, &|v| {
            v[0].conv2d_fused(v[1], Some(v[2]), 1, Fused::None, true)
        });
    }
}

/// `x` with its last two axes swapped (each image's planes transposed).
fn transpose_hw(x: &ArrayD<f32>) -> ArrayD<f32> {
    let mut axes: Vec<usize> = (0..x.ndim()).collect();
    axes.swap(x.ndim() - 2, x.ndim() - 1);
    x.view()
        .permuted_axes(axes)
        .as_standard_layout()
        .into_owned()
}

/// Why filters are ever applied transposed: on the transposed map they give the usual output
/// transposed, `conv(xᵀ, wᵀ) = conv(x, w)ᵀ`, fused ReLU and 2×2 pooling included (an odd last
/// row and column dropped), and the map's gradient transposed too — on every algorithm, with
/// constant filters (as a network's: the prepared filters shared by both orientations).
#[test]
fn transposed_filters_on_a_transposed_map_transpose_everything() {
    for (seed, x, w) in [
        (33, &[1, 3, 7, 10][..], &[4, 3, 3, 3][..]),
        (34, &[2, 16, 5, 9][..], &[5, 16, 3, 3][..]),
        (35, &[1, 32, 9, 22][..], &[32, 32, 3, 3][..]),
        (36, &[1, 64, 13, 70][..], &[64, 64, 3, 3][..]),
    ] {
        let mut r = rng(seed);
        let map = random(&mut r, x);
        let (w, b) = (
            Arc::new(random(&mut r, w)),
            Arc::new(random(&mut r, &[w[0]])),
        );
        for fused in [Fused::None, Fused::Relu, Fused::ReluMaxPool2] {
            let run = |map: &ArrayD<f32>, transposed: bool| {
                let g = Graph::new();
                let v = g.param(map.clone());
                let (wv, bv) = (g.constant(Arc::clone(&w)), g.constant(Arc::clone(&b)));
                let y = v.conv2d_fused(wv, Some(bv), 1, fused, transposed);
                let value = (*y.value()).clone();
                // A loss whose gradient differs from place to place: Σ y²/2, so dL/dy = y.
                let grad = g
                    .backward(y.square().sum().scale(0.5))
                    .get(v)
                    .unwrap()
                    .clone();
                (value, grad)
            };
            let (y, dx) = run(&map, false);
            let (yt, dxt) = run(&transpose_hw(&map), true);
            for (name, want, got) in [
                ("output", &y, &transpose_hw(&yt)),
                ("gradient", &dx, &transpose_hw(&dxt)),
            ] {
                assert_eq!(
                    want.shape(),
                    got.shape(),
                    "{name} shape (case {seed}, {fused:?})"
                );
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let worst = want
                    .iter()
                    .zip(got.iter())
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    scale > 0.0 && worst <= 1e-5 * scale,
                    "{name} differs by {worst:e} of {scale:e} (case {seed}, {fused:?})"
                );
            }
        }
    }
}

/// Ops applied to a graph's parameters (a map, its weights, its bias).
type OnParams = dyn for<'g> Fn(&[Var<'g>]) -> Var<'g>;

/// A fused op against the ops it stands for: the same values and the same gradients for its
/// input, weights and bias (all trained), bit for bit, under the loss `Σ y ⊙ weights`; and the
/// ReLU inside must have clipped something (else the comparison proves little).
fn assert_fused_equals_unfused(
    seed: u64,
    inputs: &[ArrayD<f32>],
    weights: &ArrayD<f32>,
    fused: &OnParams,
    unfused: &OnParams,
) {
    let run = |op: &OnParams| {
        let g = Graph::new();
        let v: Vec<Var> = inputs.iter().map(|p| g.param(p.clone())).collect();
        let y = op(&v);
        let loss = (y * g.constant(Arc::new(weights.clone()))).sum();
        let value = y.value();
        let grads = g.backward(loss);
        let grads: Vec<_> = v.iter().map(|p| grads.get(*p).unwrap().clone()).collect();
        (value, grads)
    };
    let (fused, unfused) = (run(fused), run(unfused));
    assert_eq!(*fused.0, *unfused.0, "values differ (case {seed})");
    assert!(
        fused.0.iter().any(|&v| v == 0.0),
        "the ReLU never clipped (case {seed})"
    );
    assert_eq!(fused.1, unfused.1, "gradients differ (case {seed})");
}

/// The fused `conv2d_relu` gives the same values and the same gradients (for input, weights
/// and bias) as `conv2d` followed by `relu` — whose derivatives are checked against finite
/// differences above — on the im2col path and on the Winograd path. (Finite differences
/// straight through the fused op would straddle the ReLU's kink.)
#[test]
fn conv2d_relu_fused_equals_conv2d_then_relu() {
    for (seed, x, w) in [
        (11, &[1, 3, 5, 7][..], &[4, 3, 3, 3][..]),
        (12, &[1, 32, 5, 6][..], &[32, 32, 3, 3][..]),
    ] {
        let mut r = rng(seed);
        let inputs = conv_inputs(&mut r, x, w);
        let weights = random(&mut r, &[x[0], w[0], x[2], x[3]]);
        assert_fused_equals_unfused(
            seed,
            &inputs,
            &weights,
            &|v| v[0].conv2d_relu(v[1], Some(v[2]), 1),
            &|v| v[0].conv2d(v[1], Some(v[2]), 1).relu(),
        );
    }
}

/// The fused `conv2d_relu_max_pool2` gives the same values and gradients (for input, weights
/// and bias) as `conv2d_relu` then `max_pool2`, bit for bit: on the Winograd path (pooled in
/// the output transform, several bands, an odd last row and column dropped) and on the others,
/// with a batch of two.
#[test]
fn conv2d_relu_max_pool2_equals_the_three_ops() {
    for (seed, x, w) in [
        (15, &[2, 3, 7, 9][..], &[4, 3, 3, 3][..]),
        (16, &[2, 32, 9, 11][..], &[32, 32, 3, 3][..]),
        (17, &[1, 32, 11, 261][..], &[16, 32, 3, 3][..]),
    ] {
        let mut r = rng(seed);
        let inputs = conv_inputs(&mut r, x, w);
        let weights = random(&mut r, &[x[0], w[0], x[2] / 2, x[3] / 2]);
        assert_fused_equals_unfused(
            seed,
            &inputs,
            &weights,
            &|v| v[0].conv2d_relu_max_pool2(v[1], Some(v[2]), 1),
            &|v| v[0].conv2d_relu(v[1], Some(v[2]), 1).max_pool2(),
        );
        // With constant weights only the map's gradient is wanted, and the fused op makes it
        // from the pooled gradient directly (added into one already there when the map is read
        // twice): still the same bits.
        let run_constant = |fused: bool, read_twice: bool| {
            let g = Graph::new();
            let x = g.param(inputs[0].clone());
            let w = g.constant(Arc::new(inputs[1].clone()));
            let b = g.constant(Arc::new(inputs[2].clone()));
            let y = if fused {
                x.conv2d_relu_max_pool2(w, Some(b), 1)
            } else {
                x.conv2d_relu(w, Some(b), 1).max_pool2()
            };
            let mut loss = (y * g.constant(Arc::new(weights.clone()))).sum();
            if read_twice {
                loss = loss + x.square().sum();
            }
            g.backward(loss).get(x).unwrap().clone()
        };
        for read_twice in [false, true] {
            assert_eq!(
                run_constant(true, read_twice),
                run_constant(false, read_twice),
                "map gradients differ (case {seed}, read twice: {read_twice})"
            );
        }
    }
}

/// A map read by a convolution and by another op gets both shares of its gradient, whichever
/// arrives first: the convolution adds its share into a gradient already there (as a style
/// layer's map has its Gram share first) or leaves its own for the other to be added to. On the
/// Winograd path (which adds as it stores) and on direct summation, with a batch of two.
#[test]
fn conv2d_input_read_twice_gets_both_gradients() {
    for (seed, x, w) in [
        (13, [2, 32, 5, 6], [32, 32, 3, 3]),
        (14, [2, 3, 5, 7], [3, 3, 3, 3]),
    ] {
        let mut r = rng(seed);
        let input = [random(&mut r, &x)];
        // Constant weights: only the map's gradient is checked (and computed).
        let (w, b) = (
            Arc::new(random(&mut r, &w)),
            Arc::new(random(&mut r, &[w[0]])),
        );
        fn conv<'g>(v: Var<'g>, w: &Arc<ArrayD<f32>>, b: &Arc<ArrayD<f32>>) -> Var<'g> {
            let g = v.graph();
            v.conv2d(
                g.constant(Arc::clone(w)),
                Some(g.constant(Arc::clone(b))),
                1,
            )
        }
        // The other reader taken after the convolution: its gradient is there first.
        check_grads(&input, &|v| conv(v[0], &w, &b) + v[0].square());
        // Taken before it.
        check_grads(&input, &|v| {
            let s = v[0].square();
            conv(v[0], &w, &b) + s
        });
    }
}

#[test]
fn conv2d_many_bands() {
    // 19 output rows: more than one band, so band seams are exercised — of direct summation
    // (2 channels) and of im2col with the col2im halo sum (5 and 6 channels).
    conv_case(7, &[1, 2, 19, 4], &[2, 2, 3, 3], 1);
    conv_case(11, &[1, 5, 19, 4], &[6, 5, 3, 3], 1);
}

#[test]
fn conv2d_without_bias_and_constant_weights() {
    let mut r = rng(8);
    let (x, w) = (
        random(&mut r, &[1, 2, 5, 5]),
        Arc::new(random(&mut r, &[3, 2, 3, 3])),
    );
    check_grads(&[x], &|v| {
        let wc = v[0].graph().constant(Arc::clone(&w));
        v[0].conv2d(wc, None, 1)
    });
}

#[test]
fn relu_away_from_the_kink() {
    let x = well_separated(&mut rng(10), &[1, 2, 3, 5], 0.05);
    check_grads(&[x], &|v| v[0].relu());
}

#[test]
fn max_pool_odd_sizes() {
    let x = well_separated(&mut rng(11), &[1, 2, 5, 7], 0.05);
    check_grads(&[x], &|v| v[0].max_pool2());
}

#[test]
fn avg_pool_odd_sizes() {
    let x = random(&mut rng(12), &[2, 1, 5, 3]);
    check_grads(&[x], &|v| v[0].avg_pool2());
}

#[test]
fn matmul_both_sides() {
    let mut r = rng(13);
    check_grads(&[random(&mut r, &[3, 5]), random(&mut r, &[5, 2])], &|v| {
        v[0].matmul(v[1])
    });
    // More rows than one parallel row block.
    check_grads(&[random(&mut r, &[19, 2]), random(&mut r, &[2, 3])], &|v| {
        v[0].matmul(v[1])
    });
}

#[test]
fn gram_odd_shapes() {
    let mut r = rng(14);
    check_grads(&[random(&mut r, &[1, 3, 5, 7])], &|v| v[0].gram());
    check_grads(&[random(&mut r, &[1, 1, 3, 1])], &|v| v[0].gram());
    check_grads(&[random(&mut r, &[2, 2, 1, 1])], &|v| v[0].gram());
}

/// A deliberately wrong Gram backward — `dF = dG·F`, forgetting the `dGᵀ·F` term — must
/// fail the same check that the real backward passes. This is what makes the tolerance
/// meaningful.
#[test]
fn wrong_gram_backward_is_caught() {
    let x = random(&mut rng(15), &[1, 3, 4, 5]);
    let r = random(&mut rng(16), &[1, 3, 3]); // asymmetric upstream gradient dG
    let f =
        |g: &Graph, v: &[Var]| (v[0].gram() * g.constant(Arc::new(r.clone()))).sum().item() as f64;
    let num = numeric_grad(std::slice::from_ref(&x), 0, 1e-2, &f);
    let (c, m) = (3, 20);
    let fm = x.as_slice().unwrap();
    let dg = r.as_slice().unwrap();
    let wrong: Vec<f32> = (0..c * m)
        .map(|idx| {
            let (i, j) = (idx / m, idx % m);
            (0..c).map(|k| dg[i * c + k] * fm[k * m + j]).sum::<f32>()
        })
        .collect();
    let err = rel_err(&num, &wrong);
    assert!(
        err > 10.0 * GRAD_TOL,
        "the wrong backward passed: error {err:.2e}"
    );
}

#[test]
fn elementwise_binary() {
    let mut r = rng(17);
    let (a, b) = (random(&mut r, &[2, 3, 1, 5]), random(&mut r, &[2, 3, 1, 5]));
    check_grads(&[a.clone(), b.clone()], &|v| v[0] + v[1]);
    check_grads(&[a.clone(), b.clone()], &|v| v[0] - v[1]);
    check_grads(&[a.clone(), b.clone()], &|v| v[0] * v[1]);
    // The mean squared error, both sides (a loss's target is a constant; here both vary).
    check_grads(&[a.clone(), b.clone()], &|v| v[0].mse(v[1]));
    // One value per op: the same as the three ops it stands for, to the bit.
    let g = Graph::new();
    let (x, y) = (g.param(a), g.param(b));
    let fused = x.mse(y).value();
    let unfused = (x - y).square().mean().value();
    assert_eq!(fused, unfused, "mse against (a − b)².mean()");
}

#[test]
fn elementwise_unary_and_reductions() {
    let mut r = rng(18);
    let x = random(&mut r, &[1, 3, 4, 5]);
    check_grads(std::slice::from_ref(&x), &|v| v[0].scale(-2.5));
    check_grads(std::slice::from_ref(&x), &|v| v[0].square());
    check_grads(std::slice::from_ref(&x), &|v| v[0].sum());
    check_grads(std::slice::from_ref(&x), &|v| v[0].mean());
    check_grads(&[x], &|v| v[0].reshape(&[3, 20]));
}

#[test]
fn neighbour_differences() {
    let mut r = rng(19);
    check_grads(&[random(&mut r, &[1, 3, 4, 5])], &|v| v[0].diff_h());
    check_grads(&[random(&mut r, &[1, 3, 4, 5])], &|v| v[0].diff_w());
    check_grads(&[random(&mut r, &[1, 1, 2, 1])], &|v| v[0].diff_h());
}

#[test]
fn crop_windows_inside_and_at_the_edges() {
    let mut r = rng(25);
    let x = random(&mut r, &[1, 2, 5, 7]);
    check_grads(std::slice::from_ref(&x), &|v| v[0].crop(1, 2, 3, 4));
    check_grads(std::slice::from_ref(&x), &|v| v[0].crop(0, 0, 5, 7));
    check_grads(&[x], &|v| v[0].crop(4, 6, 1, 1));
}

#[test]
fn channel_gather_and_affine() {
    let mut r = rng(20);
    let x = random(&mut r, &[1, 3, 3, 4]);
    check_grads(std::slice::from_ref(&x), &|v| {
        v[0].gather_channels(&[2, 1, 0])
    });
    check_grads(std::slice::from_ref(&x), &|v| {
        v[0].gather_channels(&[0, 0, 2])
    });
    check_grads(&[x], &|v| {
        v[0].channel_affine(&[4.0, -1.0, 0.5], &[0.1, 0.2, -0.3])
    });
}

#[test]
fn a_small_network_end_to_end() {
    // conv → relu → pool → conv → gram → (G − A)² mean: the style loss's path, composed.
    let mut r = rng(21);
    let x = random(&mut r, &[1, 3, 7, 6]);
    let (w1, w2) = (
        Arc::new(random(&mut r, &[4, 3, 3, 3])),
        Arc::new(random(&mut r, &[5, 4, 3, 3])),
    );
    let target = Arc::new(random(&mut r, &[1, 5, 5]).mapv(|v| v * 0.1));
    check_grads(&[x], &|v| {
        let c = |a: &Arc<ArrayD<f32>>| v[0].graph().constant(Arc::clone(a));
        let h = v[0]
            .conv2d(c(&w1), None, 1)
            .relu()
            .avg_pool2()
            .conv2d(c(&w2), None, 1);
        (h.gram() - c(&target)).square().mean()
    });
}

#[test]
fn constants_get_no_gradient_and_no_work() {
    let g = Graph::new();
    let mut r = rng(22);
    let x = g.param(random(&mut r, &[1, 2, 3, 3]));
    let w = g.constant(Arc::new(random(&mut r, &[2, 2, 3, 3])));
    let y = x.conv2d(w, None, 1);
    let unrelated = w.relu();
    assert!(y.requires_grad() && !w.requires_grad() && !unrelated.requires_grad());
    let grads = g.backward(y.sum());
    assert!(grads.get(x).is_some());
    assert!(grads.get(w).is_none());
}

/// Releasing every intermediate value as soon as the next op has read it (as the network does)
/// leaves the gradient bit-identical: the tape kept exactly what the derivatives read.
#[test]
fn releasing_intermediate_values_changes_no_gradient() {
    let mut r = rng(23);
    let x = random(&mut r, &[1, 3, 9, 7]);
    let w1 = Arc::new(random(&mut r, &[4, 3, 3, 3]));
    let w2 = Arc::new(random(&mut r, &[5, 4, 3, 3]));
    let target = Arc::new(random(&mut r, &[1, 5, 4, 3]));
    let run = |release: bool| {
        let g = Graph::new();
        let image = g.param(x.clone());
        let step = |v: Var, next| {
            if release {
                v.release();
            }
            next
        };
        let a = image.conv2d_relu(g.constant(Arc::clone(&w1)), None, 1);
        let b = step(a, a.max_pool2());
        let c = step(b, b.conv2d(g.constant(Arc::clone(&w2)), None, 1));
        let d = step(c, c.relu());
        let loss = d.gram().square().mean() + (d - g.constant(Arc::clone(&target))).square().sum();
        if release {
            d.release();
        }
        let value = loss.item();
        (value, g.backward(loss).take(image).unwrap())
    };
    let (kept, released) = (run(false), run(true));
    assert_eq!(kept.0.to_bits(), released.0.to_bits());
    assert_eq!(kept.1, released.1);
}

/// `release` frees a value no derivative reads (reading it then panics) and keeps one that a
/// derivative reads (the features of a Gram matrix).
#[test]
fn release_frees_only_what_no_derivative_reads() {
    let mut r = rng(24);
    let g = Graph::new();
    let x = g.param(random(&mut r, &[1, 2, 4, 4]));
    let relu = x.relu();
    let pooled = relu.max_pool2();
    let _gram = pooled.gram();
    relu.release();
    pooled.release();
    assert_eq!(
        relu.shape(),
        vec![1, 2, 4, 4],
        "the shape outlives the value"
    );
    assert_eq!(
        pooled.value().shape(),
        &[1, 2, 2, 2],
        "the Gram derivative reads it"
    );
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| relu.value()));
    assert!(read.is_err(), "a released value must not be readable");
}

/// `backward_unless` asks its stop check once before each derivative and ends at the first yes
/// with nothing; never told to stop, it gives what `backward` gives.
#[test]
fn backward_unless_stops_before_the_next_derivative() {
    let x0 = random(&mut rng(25), &[1, 2, 5, 4]);
    // The gradient, and how often `stop` was asked, when it says yes at its `at`-th question
    // (never, for 0).
    let run = |at: usize| {
        let g = Graph::new();
        let x = g.param(x0.clone());
        let loss = x.relu().max_pool2().gram().square().mean();
        let asked = std::cell::Cell::new(0);
        let grads = g.backward_unless(loss, &|| {
            asked.set(asked.get() + 1);
            asked.get() == at
        });
        (asked.get(), grads.map(|mut d| d.take(x).unwrap()))
    };
    let g = Graph::new();
    let x = g.param(x0.clone());
    let want = g
        .backward(x.relu().max_pool2().gram().square().mean())
        .take(x)
        .unwrap();
    let (ops, all) = run(0);
    assert_eq!(ops, 5, "once per op: mean, square, gram, pool, relu");
    assert_eq!(all, Some(want));
    for at in 1..=ops {
        assert_eq!(run(at), (at, None), "stop at question {at}");
    }
}
