//! Every op the tape can record, and every derivative, in one place.
//!
//! [`Op`] is a closed enum and [`backward_op`] one exhaustive `match`: adding an op means adding
//! a variant, and the compiler then points at the derivative that must be written. Each arm
//! receives the incoming gradient `g = ∂L/∂y` and returns `∂L/∂input` for each input that
//! requires a gradient — and computes nothing for the others. An arm may read only the input
//! values its op lists in [`Op::reads`]: the tape keeps those and frees the rest early. No arm
//! reads its own output (a ReLU keeps a bit mask instead), so every output can be freed as soon
//! as the ops that consume it have been recorded.

use crate::array::{flat, flat_mut, from_vec, join_images, map_values, zip_values};
use crate::kernels::conv::Filters;
use crate::kernels::conv::Source;
use crate::kernels::gemm::MatRef;
use crate::kernels::{conv, elementwise, matmul, pool};
use ndarray::{ArrayD, Axis, Slice};
use std::sync::Arc;

/// A recorded operation: the ids of its inputs and what its derivative needs from the forward
/// pass. Shapes are validated when the op is created (see the `ops` module).
pub(crate) enum Op {
    /// `y = conv(x, w) + b`, stride 1, zero padding (NCHW, weights `C_out×C_in×k_h×k_w`), or
    /// `y = max(conv(x, w) + b, 0)` with `relu_mask` its `y > 0` bits (the fused
    /// `conv2d_relu`), or that max-pooled 2×2 with `pool` its windows' winners and `relu_mask`
    /// the pooled values' `> 0` bits (`conv2d_relu_max_pool2`: a gradient reaches only a
    /// window's winner, which passed the ReLU exactly when the pooled value is positive);
    /// `geometry` is one image's convolution (padding included), `filters` are `w` prepared for
    /// the input-gradient algorithm (shared with the forward).
    Conv2d {
        x: usize,
        w: usize,
        b: Option<usize>,
        relu_mask: Option<Vec<u64>>,
        pool: Option<Vec<u8>>,
        filters: Arc<Filters>,
        geometry: conv::ConvGeometry,
    },
    /// `y = max(x, 0)`; `mask` holds its `y > 0` bits (`elementwise::relu_mask`).
    Relu { x: usize, mask: Vec<u64> },
    /// 2×2 stride-2 max pooling; `argmax` says which input of its window each output took.
    MaxPool2 { x: usize, argmax: Vec<u8> },
    /// 2×2 stride-2 average pooling.
    AvgPool2 { x: usize },
    /// `y = a·b` for matrices.
    MatMul { a: usize, b: usize },
    /// `y = F·Fᵀ` per image, `F` the `C×(H·W)` feature matrix.
    Gram { x: usize },
    /// `y = a + b`.
    Add { a: usize, b: usize },
    /// `y = a − b`.
    Sub { a: usize, b: usize },
    /// `y = a ⊙ b` (elementwise).
    Mul { a: usize, b: usize },
    /// `y = factor · x`.
    Scale { x: usize, factor: f32 },
    /// `y = x²` (elementwise).
    Square { x: usize },
    /// `y = Σ x`.
    Sum { x: usize },
    /// `y = Σ x / n`.
    Mean { x: usize },
    /// `y = Σ (a − b)² / n`.
    Mse { a: usize, b: usize },
    /// The same values under another shape.
    Reshape { x: usize },
    /// `y[.., i, j] = x[.., i+1, j] − x[.., i, j]` (vertical neighbour differences).
    DiffH { x: usize },
    /// `y[.., i, j] = x[.., i, j+1] − x[.., i, j]` (horizontal neighbour differences).
    DiffW { x: usize },
    /// `y = x[:, :, top.., left..]`, a window of an N×C×H×W map.
    Crop { x: usize, top: usize, left: usize },
    /// `y[:, k] = x[:, index[k]]` (channels picked or reordered, e.g. RGB → BGR).
    GatherChannels { x: usize, index: Vec<usize> },
    /// `y[:, c] = scale[c]·x[:, c] + shift[c]` (the shift needs no memory: it has no derivative).
    ChannelAffine { x: usize, scale: Vec<f32> },
}

impl Op {
    /// The op's name in profiles.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Conv2d {
                relu_mask: None, ..
            } => "conv2d",
            Op::Conv2d {
                relu_mask: Some(_),
                pool: None,
                ..
            } => "conv2d_relu",
            Op::Conv2d {
                relu_mask: Some(_),
                pool: Some(_),
                ..
            } => "conv2d_relu_max_pool2",
            Op::Relu { .. } => "relu",
            Op::MaxPool2 { .. } => "max_pool2",
            Op::AvgPool2 { .. } => "avg_pool2",
            Op::MatMul { .. } => "matmul",
            Op::Gram { .. } => "gram",
            Op::Add { .. } => "add",
            Op::Sub { .. } => "sub",
            Op::Mul { .. } => "mul",
            Op::Scale { .. } => "scale",
            Op::Square { .. } => "square",
            Op::Sum { .. } => "sum",
            Op::Mean { .. } => "mean",
            Op::Mse { .. } => "mse",
            Op::Reshape { .. } => "reshape",
            Op::DiffH { .. } => "diff_h",
            Op::DiffW { .. } => "diff_w",
            Op::Crop { .. } => "crop",
            Op::GatherChannels { .. } => "gather_channels",
            Op::ChannelAffine { .. } => "channel_affine",
        }
    }

    /// A convolution's geometry (for profiles), `None` for every other op.
    pub(crate) fn conv_geometry(&self) -> Option<conv::ConvGeometry> {
        match self {
            Op::Conv2d { geometry, .. } => Some(*geometry),
            _ => None,
        }
    }

    /// The ids of the op's inputs.
    pub(crate) fn inputs(&self) -> Vec<usize> {
        match *self {
            Op::Conv2d { x, w, b, .. } => [Some(x), Some(w), b].into_iter().flatten().collect(),
            Op::MatMul { a, b }
            | Op::Add { a, b }
            | Op::Sub { a, b }
            | Op::Mul { a, b }
            | Op::Mse { a, b } => vec![a, b],
            Op::Relu { x, .. }
            | Op::MaxPool2 { x, .. }
            | Op::AvgPool2 { x }
            | Op::Gram { x }
            | Op::Scale { x, .. }
            | Op::Square { x }
            | Op::Sum { x }
            | Op::Mean { x }
            | Op::Reshape { x }
            | Op::DiffH { x }
            | Op::DiffW { x }
            | Op::Crop { x, .. }
            | Op::GatherChannels { x, .. }
            | Op::ChannelAffine { x, .. } => vec![x],
        }
    }
}

impl Op {
    /// The inputs whose forward values this op's derivative reads, given which inputs require a
    /// gradient: the tape must keep these (and may free every other value). Shapes are always
    /// available and do not count.
    pub(crate) fn reads(&self, requires_grad: &dyn Fn(usize) -> bool) -> Vec<usize> {
        match *self {
            // dW = dY·colᵀ needs x; dx needs only the prepared filters.
            Op::Conv2d { x, w, .. } if requires_grad(w) => vec![x],
            Op::MatMul { a, b } | Op::Mul { a, b } => {
                // Each side's gradient reads the other side.
                let mut r = Vec::new();
                if requires_grad(a) {
                    r.push(b);
                }
                if requires_grad(b) {
                    r.push(a);
                }
                r
            }
            Op::Gram { x } | Op::Square { x } => vec![x],
            // Either side's gradient is ±(2/n)·(a − b).
            Op::Mse { a, b } if requires_grad(a) || requires_grad(b) => vec![a, b],
            _ => Vec::new(),
        }
    }
}

/// The derivative of `op`: given `g = ∂L/∂y` (owned, so that it can be reused in place), returns
/// `(input id, ∂L/∂input)` for the inputs where `needs(id)` holds, for the caller to add to
/// `grads`. `value_of(id)` reads an input's forward value (only those listed by [`Op::reads`]),
/// `shape_of(id)` its shape. A convolution whose input already has a gradient in `grads` adds
/// its share there itself, as it stores it (`conv2d_backward_input_add`), and returns nothing
/// for it: the same sums without a second map-sized buffer.
pub(crate) fn backward_op<'a>(
    op: &Op,
    mut g: ArrayD<f32>,
    value_of: &dyn Fn(usize) -> &'a ArrayD<f32>,
    shape_of: &dyn Fn(usize) -> &'a [usize],
    needs: &dyn Fn(usize) -> bool,
    grads: &mut [Option<ArrayD<f32>>],
) -> Vec<(usize, ArrayD<f32>)> {
    let mut out = Vec::new();
    match *op {
        Op::Conv2d {
            x,
            w,
            b,
            ref relu_mask,
            ref pool,
            ref filters,
            geometry: geo,
        } => {
            let (in_len, out_len) = (
                geo.c_in * geo.h * geo.w,
                geo.c_out * geo.out_h() * geo.out_w(),
            );
            // Through the fused ReLU first: the gradient passes where y > 0 — masked here for
            // a pooled layer or when the weight and bias gradients read it too; else as the
            // input gradient's kernel reads each row (`Source::Masked`), with no pass of its own.
            let unpool_here = needs(w) || b.is_some_and(needs);
            let mask_later = match relu_mask {
                Some(mask) if pool.is_none() && !unpool_here => Some(mask),
                Some(mask) => {
                    elementwise::relu_backward_in_place(flat_mut(&mut g), mask);
                    None
                }
                None => None,
            };
            let acc = grads[x]
                .as_mut()
                .filter(|a| a.shape() == shape_of(x))
                .and_then(|a| a.as_slice_mut());
            // Then back through the fused pooling, to each window's winner: made row by row
            // inside the input gradient when only that is needed (a network's constant
            // weights), else unpooled here for the weight and bias gradients too.
            if let (Some(argmax), true) = (pool, unpool_here) {
                let planes = shape_of(x)[0] * geo.c_out;
                let (h, w) = (geo.out_h(), geo.out_w());
                let dy = pool::max_pool2_backward(flat(&g), argmax, planes, h, w);
                g = from_vec(&[shape_of(x)[0], geo.c_out, h, w], dy);
            }
            let gs = flat(&g);
            let pooled_len = geo.c_out * (geo.out_h() / 2) * (geo.out_w() / 2);
            let dy = |i: usize| match (pool, mask_later) {
                (Some(argmax), _) if !unpool_here => Source::Unpooled {
                    g: &gs[i * pooled_len..(i + 1) * pooled_len],
                    argmax: &argmax[i * pooled_len..(i + 1) * pooled_len],
                },
                (_, Some(mask)) => Source::Masked {
                    g: &gs[i * out_len..(i + 1) * out_len],
                    mask,
                    first_bit: i * out_len,
                },
                _ => Source::Planes(&gs[i * out_len..(i + 1) * out_len]),
            };
            // dx, image by image (the flipped convolution, or col2im(Wᵀ · dY); see
            // `conv::input_grad_algorithm`): added into the gradient `x` already has, if any.
            match acc {
                Some(acc) if needs(x) => {
                    for (i, dx) in acc.chunks_exact_mut(in_len).enumerate() {
                        conv::conv2d_backward_input_add(dy(i), filters, &geo, dx);
                    }
                }
                _ if needs(x) => {
                    let images = shape_of(x)[0];
                    let dx = join_images(
                        (0..images).map(|i| conv::conv2d_backward_input(dy(i), filters, &geo)),
                    );
                    out.push((x, from_vec(shape_of(x), dx)));
                }
                _ => {}
            }
            if needs(w) {
                // dW = Σ_images dY · colᵀ.
                let mut dw = vec![0.0; geo.c_out * geo.k()];
                for (xi, dy) in flat(value_of(x))
                    .chunks_exact(in_len)
                    .zip(gs.chunks_exact(out_len))
                {
                    let part = conv::conv2d_backward_weight(xi, dy, &geo);
                    dw.iter_mut().zip(&part).for_each(|(d, s)| *d += s);
                }
                out.push((w, from_vec(shape_of(w), dw)));
            }
            if let Some(b) = b.filter(|&b| needs(b)) {
                // db[o] = Σ over images and pixels of dY[o].
                let per_plane = geo.out_h() * geo.out_w();
                let mut db = vec![0.0f32; geo.c_out];
                for (i, plane) in gs.chunks_exact(per_plane).enumerate() {
                    db[i % geo.c_out] += plane.iter().sum::<f32>();
                }
                out.push((b, from_vec(&[geo.c_out], db)));
            }
        }
        Op::Relu { x, ref mask } => {
            // dx = g where y > 0, else 0 (the subgradient 0 at the kink).
            elementwise::relu_backward_in_place(flat_mut(&mut g), mask);
            out.push((x, g));
        }
        Op::MaxPool2 { x, ref argmax } => {
            let s = shape_of(x);
            let (c, h, w) = (s[0] * s[1], s[2], s[3]);
            let dx = pool::max_pool2_backward(flat(&g), argmax, c, h, w);
            out.push((x, from_vec(s, dx)));
        }
        Op::AvgPool2 { x } => {
            let s = shape_of(x);
            let dx = pool::avg_pool2_backward(flat(&g), s[0] * s[1], s[2], s[3]);
            out.push((x, from_vec(s, dx)));
        }
        Op::MatMul { a, b } => {
            let (av, bv) = (value_of(a), value_of(b));
            let (m, k, n) = (av.shape()[0], av.shape()[1], bv.shape()[1]);
            let gm = MatRef::row_major(flat(&g), m, n);
            if needs(a) {
                // dA = G · Bᵀ.
                let da = matmul::matmul(gm, MatRef::row_major(flat(bv), k, n).t());
                out.push((a, from_vec(&[m, k], da)));
            }
            if needs(b) {
                // dB = Aᵀ · G.
                let db = matmul::matmul(MatRef::row_major(flat(av), m, k).t(), gm);
                out.push((b, from_vec(&[k, n], db)));
            }
        }
        Op::Gram { x } => {
            // G = F·Fᵀ  ⇒  dF = (dG + dGᵀ)·F — both terms, since G is a product of F with
            // itself.
            let xv = value_of(x);
            let s = xv.shape();
            let (n, c, m) = (s[0], s[1], s[2] * s[3]);
            let dx = join_images(
                flat(xv)
                    .chunks_exact(c * m)
                    .zip(flat(&g).chunks_exact(c * c))
                    .map(|(f, dg)| {
                        let mut sym = vec![0.0; c * c];
                        for i in 0..c {
                            for j in 0..c {
                                sym[i * c + j] = dg[i * c + j] + dg[j * c + i];
                            }
                        }
                        matmul::matmul(MatRef::row_major(&sym, c, c), MatRef::row_major(f, c, m))
                    }),
            );
            debug_assert_eq!(dx.len(), n * c * m);
            out.push((x, from_vec(s, dx)));
        }
        Op::Add { a, b } => match (needs(a), needs(b)) {
            (true, true) => {
                out.push((a, g.clone()));
                out.push((b, g));
            }
            (true, false) => out.push((a, g)),
            (false, true) => out.push((b, g)),
            (false, false) => {}
        },
        Op::Sub { a, b } => {
            if needs(b) {
                out.push((b, map_values(&g, |v| -v)));
            }
            if needs(a) {
                out.push((a, g));
            }
        }
        Op::Mul { a, b } => {
            // d(a⊙b) = g⊙b for a, g⊙a for b.
            let times = |other: usize| zip_values(&g, value_of(other), |g, v| g * v);
            if needs(a) {
                out.push((a, times(b)));
            }
            if needs(b) {
                out.push((b, times(a)));
            }
        }
        Op::Scale { x, factor } => out.push((x, map_values(&g, |v| v * factor))),
        Op::Square { x } => out.push((x, zip_values(&g, value_of(x), |g, v| g * v * 2.0))),
        Op::Sum { x } => {
            let s = shape_of(x);
            let dx = elementwise::filled(s.iter().product(), flat(&g)[0]);
            out.push((x, from_vec(s, dx)));
        }
        Op::Mean { x } => {
            let s = shape_of(x);
            let n = s.iter().product::<usize>();
            let dx = elementwise::filled(n, flat(&g)[0] / n as f32);
            out.push((x, from_vec(s, dx)));
        }
        Op::Mse { a, b } => {
            // ∂/∂a = (g/n)·2(a − b), in the order the mean's, square's and difference's
            // derivatives compute it; ∂/∂b its negation.
            if needs(a) || needs(b) {
                let gn = flat(&g)[0] / shape_of(a).iter().product::<usize>() as f32;
                let da = zip_values(value_of(a), value_of(b), |u, v| gn * (u - v) * 2.0);
                if needs(b) {
                    out.push((b, map_values(&da, |v| -v)));
                }
                if needs(a) {
                    out.push((a, da));
                }
            }
        }
        Op::Reshape { x } => {
            out.push((
                x,
                g.into_shape_with_order(shape_of(x))
                    .expect("same element count"),
            ));
        }
        Op::DiffH { x } => out.push((x, diff_backward(shape_of(x), &g, shape_of(x).len() - 2))),
        Op::DiffW { x } => out.push((x, diff_backward(shape_of(x), &g, shape_of(x).len() - 1))),
        Op::Crop { x, top, left } => {
            // The window's gradient in place, zero elsewhere.
            let mut dx = ArrayD::zeros(shape_of(x));
            let (rows, cols) = (g.shape()[2], g.shape()[3]);
            dx.slice_axis_mut(Axis(2), Slice::from(top..top + rows))
                .slice_axis_mut(Axis(3), Slice::from(left..left + cols))
                .assign(&g);
            out.push((x, dx));
        }
        Op::GatherChannels { x, ref index } => {
            // Each output channel k came from input channel index[k]: send its gradient back.
            let mut dx = ArrayD::zeros(shape_of(x));
            for (k, &src) in index.iter().enumerate() {
                let mut dst = dx.index_axis_mut(Axis(1), src);
                dst += &g.index_axis(Axis(1), k);
            }
            out.push((x, dx));
        }
        Op::ChannelAffine { x, ref scale } => {
            let mut dx = g;
            for (c, &s) in scale.iter().enumerate() {
                dx.index_axis_mut(Axis(1), c).mapv_inplace(|v| v * s);
            }
            out.push((x, dx));
        }
    }
    debug_assert!(out.iter().all(|(id, _)| needs(*id)));
    out
}

/// Adjoint of a forward difference along `axis`: `y_i = x_{i+1} − x_i` sends `+g_i` to
/// `x_{i+1}` and `−g_i` to `x_i`.
fn diff_backward(x_shape: &[usize], g: &ArrayD<f32>, axis: usize) -> ArrayD<f32> {
    let mut dx = ArrayD::zeros(x_shape);
    let ax = Axis(axis);
    let mut hi = dx.slice_axis_mut(ax, Slice::from(1..));
    hi += g;
    let mut lo = dx.slice_axis_mut(ax, Slice::from(..-1));
    lo -= g;
    dx
}
