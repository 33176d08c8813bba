//! The operations on [`Var`]: each checks its input shapes (a mismatch is a programming error
//! and panics here, naming the op and the shapes), computes its forward value with a kernel, and
//! records itself on the tape. The derivatives are in the `backward` module.

use crate::array::{conv_geometry, flat, from_vec, join_images, map_values, zip_values};
use crate::backward::Op;
use crate::filter_cache::filters_of;
use crate::graph::Var;
use crate::kernels::conv::{Activation, ConvGeometry, Filters};
use crate::kernels::elementwise::MaskWriter;
use crate::kernels::gemm::MatRef;
use crate::kernels::{conv, elementwise, gram, matmul, pool};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use std::sync::Arc;

impl<'g> Var<'g> {
    /// This variable's id, the key of its gradient in [`crate::Gradients`].
    pub fn id(self) -> usize {
        self.id
    }

    /// The graph this variable lives on (to add constants beside it).
    pub fn graph(self) -> &'g crate::Graph {
        self.graph
    }

    /// The forward value (shared, not copied).
    pub fn value(self) -> Arc<ArrayD<f32>> {
        self.graph.value(self.id)
    }

    /// The shape of the value (known even after the value is released).
    pub fn shape(self) -> Vec<usize> {
        self.graph.shape(self.id)
    }

    /// Frees this variable's value, unless a recorded derivative needs it, to bound memory: a
    /// network releases each activation once the next layer has read it. Reading the value
    /// afterwards panics; its shape stays known.
    pub fn release(self) {
        self.graph.release(self.id);
    }

    /// Names this variable's op in the graph's profile (e.g. the network layer `conv1_2`); does
    /// nothing on a graph that is not profiled. Returns `self`, to chain.
    pub fn label(self, name: &str) -> Var<'g> {
        self.graph.set_label(self.id, name);
        self
    }

    /// Whether a gradient flows to this variable (it is a parameter or computed from one).
    pub fn requires_grad(self) -> bool {
        self.graph.requires_grad(self.id)
    }

    /// The value of a single-element tensor (a loss).
    #[track_caller]
    pub fn item(self) -> f32 {
        let v = self.value();
        assert_eq!(
            v.len(),
            1,
            "item: expected one element, got shape {:?}",
            v.shape()
        );
        flat(&v)[0]
    }

    #[track_caller]
    fn same_graph(self, other: Var<'g>, op: &str) {
        assert!(
            std::ptr::eq(self.graph, other.graph),
            "{op}: operands belong to different graphs"
        );
    }

    #[track_caller]
    pub(crate) fn same_shape(self, other: Var<'g>, op: &str) {
        self.same_graph(other, op);
        let (a, b) = (self.shape(), other.shape());
        assert_eq!(a, b, "{op}: shapes differ: {a:?} vs {b:?}");
    }

    #[track_caller]
    fn nchw(self, op: &str) -> [usize; 4] {
        let s = self.shape();
        assert_eq!(
            s.len(),
            4,
            "{op}: expected an N×C×H×W tensor, got shape {s:?}"
        );
        [s[0], s[1], s[2], s[3]]
    }

    /// 2-D convolution, stride 1, zero padding `pad`:
    /// `y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v]·x[n,c,i+u−p,j+v−p]`.
    /// `self: N×C_in×H×W`, `weight: C_out×C_in×k_h×k_w`, `bias: C_out`. The algorithm
    /// (Winograd or im2col + GEMM) is chosen by shape in `kernels::conv`.
    #[track_caller]
    pub fn conv2d(self, weight: Var<'g>, bias: Option<Var<'g>>, pad: usize) -> Var<'g> {
        self.conv2d_fused(weight, bias, pad, Fused::None, false)
    }

    /// `relu(conv2d(weight, bias, pad))` as one op: the ReLU is applied as each output is
    /// stored, so the map is written once and no pre-activation copy is kept (its backward
    /// masks the incoming gradient with `y > 0` before the convolution's). The same values as
    /// `conv2d(…).relu()`.
    #[track_caller]
    pub fn conv2d_relu(self, weight: Var<'g>, bias: Option<Var<'g>>, pad: usize) -> Var<'g> {
        self.conv2d_fused(weight, bias, pad, Fused::Relu, false)
    }

    /// `max_pool2(relu(conv2d(weight, bias, pad)))` as one op, for a network block's last
    /// convolution: the pooling is taken as the ReLU's outputs are stored (in the Winograd
    /// output transform; after the map on the other paths), so the map at full resolution is
    /// never kept, and the tape holds only the pooled map's bits and each window's winner. The
    /// same values and gradients as the three ops one after the other.
    #[track_caller]
    pub fn conv2d_relu_max_pool2(
        self,
        weight: Var<'g>,
        bias: Option<Var<'g>>,
        pad: usize,
    ) -> Var<'g> {
        self.conv2d_fused(weight, bias, pad, Fused::ReluMaxPool2, false)
    }

    /// [`conv2d`](Self::conv2d), or one of its fused forms as `fused` says, with the filters
    /// applied as stored or, with `transposed_filters`, transposed: `w[o,c,v,u]` in place of
    /// `w[o,c,u,v]` (square kernels only). Since `conv(xᵀ, wᵀ) = conv(x, w)ᵀ` (and the ReLU and
    /// 2×2 pooling commute with transposing), a network run this way on a transposed image
    /// gives every map transposed — how `nst-vgg` runs tall images as wide ones, which the
    /// kernels compute faster. The filters' prepared forms serve both orientations (no copy).
    #[track_caller]
    pub fn conv2d_fused(
        self,
        weight: Var<'g>,
        bias: Option<Var<'g>>,
        pad: usize,
        fused: Fused,
        transposed_filters: bool,
    ) -> Var<'g> {
        self.same_graph(weight, "conv2d");
        let [n, c, h, w] = self.nchw("conv2d");
        let ws = weight.shape();
        assert!(
            ws.len() == 4 && ws[1] == c && ws[0] > 0,
            "conv2d: input {:?} and weight {ws:?} disagree (weight must be C_out×{c}×kh×kw)",
            self.shape()
        );
        assert!(
            h + 2 * pad >= ws[2] && w + 2 * pad >= ws[3],
            "conv2d: kernel {}×{} larger than the padded input {:?} with pad {pad}",
            ws[2],
            ws[3],
            self.shape()
        );
        assert!(
            !transposed_filters || ws[2] == ws[3],
            "conv2d: transposed filters must be square, got weight {ws:?}"
        );
        if let Some(b) = bias {
            self.same_graph(b, "conv2d");
            assert_eq!(
                b.shape(),
                vec![ws[0]],
                "conv2d: bias must have shape [{}]",
                ws[0]
            );
        }
        let (xv, wv) = (self.value(), weight.value());
        let bv = bias.map(|b| b.value());
        let geo = ConvGeometry {
            transposed: transposed_filters,
            ..conv_geometry(&xv, &wv, pad)
        };
        // Constant weights (a network's) keep their prepared filters across evaluations.
        let filters = if self.graph.requires_grad(weight.id) {
            Arc::new(Filters::shared(Arc::clone(&wv), &geo))
        } else {
            filters_of(&wv, &geo)
        };
        let bias_v = bv.as_deref().map(flat);
        let images = flat(&xv).chunks_exact(c * h * w);
        let out_shape = [n, geo.c_out, geo.out_h(), geo.out_w()];
        let (value, relu_mask, pool) = match fused {
            Fused::None => {
                let y =
                    join_images(images.map(|xi| {
                        conv::conv2d_forward(xi, &filters, bias_v, Activation::None, &geo)
                    }));
                (from_vec(&out_shape, y), None, None)
            }
            Fused::Relu => {
                // The ReLU's mask, set by the convolution as it stores each row; image `i`'s
                // bits from `i·len` on, as if taken from the whole batch's map.
                let len = geo.c_out * geo.out_h() * geo.out_w();
                let mut mask = vec![0u64; (n * len).div_ceil(64)];
                let writer = MaskWriter::new(&mut mask);
                let y = join_images(images.enumerate().map(|(i, xi)| {
                    let act = Activation::ReluMasked(writer.at(i * len));
                    conv::conv2d_forward(xi, &filters, bias_v, act, &geo)
                }));
                (from_vec(&out_shape, y), Some(mask), None)
            }
            Fused::ReluMaxPool2 => {
                let mut argmax: Vec<u8> = Vec::new();
                let y = join_images(images.map(|xi| {
                    let (p, a) = conv::conv2d_forward_relu_max_pool(xi, &filters, bias_v, &geo);
                    argmax.extend(a);
                    p
                }));
                let mask = elementwise::relu_mask(&y);
                let shape = [n, geo.c_out, geo.out_h() / 2, geo.out_w() / 2];
                (from_vec(&shape, y), Some(mask), Some(argmax))
            }
        };
        let op = Op::Conv2d {
            x: self.id,
            w: weight.id,
            b: bias.map(|b| b.id),
            relu_mask,
            pool,
            filters,
            geometry: geo,
        };
        self.graph.record(value, op)
    }

    /// Rectified linear unit, `max(x, 0)` (elementwise, in parallel over fixed chunks).
    pub fn relu(self) -> Var<'g> {
        let v = self.value();
        let y = elementwise::relu_forward(flat(&v));
        let mask = elementwise::relu_mask(&y);
        self.graph
            .record(from_vec(v.shape(), y), Op::Relu { x: self.id, mask })
    }

    /// 2×2 stride-2 max pooling of an N×C×H×W tensor; output `⌊H/2⌋×⌊W/2⌋`.
    #[track_caller]
    pub fn max_pool2(self) -> Var<'g> {
        let [n, c, h, w] = self.nchw("max_pool2");
        let (y, argmax) = pool::max_pool2_forward(flat(&self.value()), n * c, h, w);
        let value = from_vec(&[n, c, h / 2, w / 2], y);
        self.graph
            .record(value, Op::MaxPool2 { x: self.id, argmax })
    }

    /// 2×2 stride-2 average pooling of an N×C×H×W tensor; output `⌊H/2⌋×⌊W/2⌋`.
    #[track_caller]
    pub fn avg_pool2(self) -> Var<'g> {
        let [n, c, h, w] = self.nchw("avg_pool2");
        let y = pool::avg_pool2_forward(flat(&self.value()), n * c, h, w);
        self.graph.record(
            from_vec(&[n, c, h / 2, w / 2], y),
            Op::AvgPool2 { x: self.id },
        )
    }

    /// Matrix product of an `m×k` and a `k×n` matrix.
    #[track_caller]
    pub fn matmul(self, rhs: Var<'g>) -> Var<'g> {
        self.same_graph(rhs, "matmul");
        let (a, b) = (self.shape(), rhs.shape());
        assert!(
            a.len() == 2 && b.len() == 2 && a[1] == b[0],
            "matmul: shapes {a:?} and {b:?} do not multiply"
        );
        let (av, bv) = (self.value(), rhs.value());
        let c = matmul::matmul(
            MatRef::row_major(flat(&av), a[0], a[1]),
            MatRef::row_major(flat(&bv), b[0], b[1]),
        );
        self.graph.record(
            from_vec(&[a[0], b[1]], c),
            Op::MatMul {
                a: self.id,
                b: rhs.id,
            },
        )
    }

    /// Gram matrix of each image's feature map: with `F` the `C×(H·W)` matrix of the N×C×H×W
    /// input, `G = F·Fᵀ`, shape N×C×C — unnormalised, a plain sum over pixels (so partial sums
    /// over parts of an image add up). The style loss applies the paper's normalisation
    /// (`nst_loss::gram_matrix`).
    #[track_caller]
    pub fn gram(self) -> Var<'g> {
        let [n, c, h, w] = self.nchw("gram");
        let xv = self.value();
        let mut g = Vec::with_capacity(n * c * c);
        for f in flat(&xv).chunks_exact(c * h * w) {
            g.extend(gram::gram(f, c, h * w));
        }
        self.graph
            .record(from_vec(&[n, c, c], g), Op::Gram { x: self.id })
    }

    /// `factor · self`.
    pub fn scale(self, factor: f32) -> Var<'g> {
        let y = map_values(&self.value(), |x| x * factor);
        self.graph.record(y, Op::Scale { x: self.id, factor })
    }

    /// Elementwise square.
    pub fn square(self) -> Var<'g> {
        let y = map_values(&self.value(), |x| x * x);
        self.graph.record(y, Op::Square { x: self.id })
    }

    /// Sum of all elements, a 0-dimensional tensor. Accumulated in f64 so that a loss summed over
    /// millions of pixels keeps its precision.
    pub fn sum(self) -> Var<'g> {
        let s = elementwise::sum_f64(flat(&self.value()));
        self.graph.record(
            ArrayD::from_elem(IxDyn(&[]), s as f32),
            Op::Sum { x: self.id },
        )
    }

    /// Mean of all elements, a 0-dimensional tensor (accumulated in f64).
    #[track_caller]
    pub fn mean(self) -> Var<'g> {
        let v = self.value();
        assert!(!v.is_empty(), "mean: empty tensor of shape {:?}", v.shape());
        let s = elementwise::sum_f64(flat(&v)) / v.len() as f64;
        self.graph.record(
            ArrayD::from_elem(IxDyn(&[]), s as f32),
            Op::Mean { x: self.id },
        )
    }

    /// `mean((self − target)²)`, a 0-dimensional tensor: the mean squared error between two
    /// tensors of one shape, in one pass accumulated in f64 — the same value as
    /// `(self − target).square().mean()` without the difference and the square as maps of their
    /// own (two passes and a map-sized buffer each, for a content layer's 1.6 M values).
    #[track_caller]
    pub fn mse(self, target: Var<'g>) -> Var<'g> {
        self.same_shape(target, "mse");
        let (a, b) = (self.value(), target.value());
        assert!(!a.is_empty(), "mse: empty tensors");
        let s = elementwise::squared_distance_f64(flat(&a), flat(&b)) / a.len() as f64;
        self.graph.record(
            ArrayD::from_elem(IxDyn(&[]), s as f32),
            Op::Mse {
                a: self.id,
                b: target.id,
            },
        )
    }

    /// The same elements, in row-major order, under another shape of equal size.
    #[track_caller]
    pub fn reshape(self, shape: &[usize]) -> Var<'g> {
        let v = self.value();
        assert_eq!(
            v.len(),
            shape.iter().product::<usize>(),
            "reshape: cannot view shape {:?} as {shape:?}",
            v.shape()
        );
        let y = from_vec(shape, flat(&v).to_vec());
        self.graph.record(y, Op::Reshape { x: self.id })
    }

    /// Vertical neighbour differences over the last two axes: `y[.., i, j] = x[.., i+1, j] −
    /// x[.., i, j]`, one row shorter (total variation's first term).
    #[track_caller]
    pub fn diff_h(self) -> Var<'g> {
        let y = neighbour_diff(&self.value(), "diff_h", 2);
        self.graph.record(y, Op::DiffH { x: self.id })
    }

    /// Horizontal neighbour differences: `y[.., i, j] = x[.., i, j+1] − x[.., i, j]`, one column
    /// shorter (total variation's second term).
    #[track_caller]
    pub fn diff_w(self) -> Var<'g> {
        let y = neighbour_diff(&self.value(), "diff_w", 1);
        self.graph.record(y, Op::DiffW { x: self.id })
    }

    /// The window `rows × cols` starting at row `top`, column `left` of an N×C×H×W map (the part
    /// of a tile's features the tile owns, in tiled evaluation).
    #[track_caller]
    pub fn crop(self, top: usize, left: usize, rows: usize, cols: usize) -> Var<'g> {
        let [_, _, h, w] = self.nchw("crop");
        assert!(
            top + rows <= h && left + cols <= w,
            "crop: window {rows}×{cols} at ({top}, {left}) outside a {h}×{w} map"
        );
        let v = self.value();
        let y = v
            .slice_axis(Axis(2), Slice::from(top..top + rows))
            .slice_axis(Axis(3), Slice::from(left..left + cols))
            .to_owned();
        self.graph.record(
            y,
            Op::Crop {
                x: self.id,
                top,
                left,
            },
        )
    }

    /// Picks channels (axis 1) by index: `y[:, k] = x[:, index[k]]`. `[2, 1, 0]` turns RGB into
    /// BGR.
    #[track_caller]
    pub fn gather_channels(self, index: &[usize]) -> Var<'g> {
        let v = self.value();
        assert!(
            v.ndim() >= 2,
            "gather_channels: expected N×C×…, got shape {:?}",
            v.shape()
        );
        let c = v.shape()[1];
        assert!(
            index.iter().all(|&i| i < c),
            "gather_channels: index {index:?} out of range for {c} channels"
        );
        let y = v.select(Axis(1), index);
        self.graph.record(
            y,
            Op::GatherChannels {
                x: self.id,
                index: index.to_vec(),
            },
        )
    }

    /// Per-channel affine map on axis 1: `y[:, c] = scale[c]·x[:, c] + shift[c]` — the network's
    /// input normalisation `(x·range − mean)/std` is `scale = range/std`, `shift = −mean/std`.
    #[track_caller]
    pub fn channel_affine(self, scale: &[f32], shift: &[f32]) -> Var<'g> {
        let v = self.value();
        assert!(
            v.ndim() >= 2 && scale.len() == v.shape()[1] && shift.len() == v.shape()[1],
            "channel_affine: {} scales and {} shifts for shape {:?}",
            scale.len(),
            shift.len(),
            v.shape()
        );
        let mut y = (*v).clone();
        for (c, (&s, &t)) in scale.iter().zip(shift).enumerate() {
            y.index_axis_mut(Axis(1), c).mapv_inplace(|x| s * x + t);
        }
        self.graph.record(
            y,
            Op::ChannelAffine {
                x: self.id,
                scale: scale.to_vec(),
            },
        )
    }
}

/// Elementwise `a + b` (same shapes; no broadcasting).
impl<'g> std::ops::Add for Var<'g> {
    type Output = Var<'g>;

    #[track_caller]
    fn add(self, rhs: Var<'g>) -> Var<'g> {
        self.same_shape(rhs, "add");
        let y = zip_values(&self.value(), &rhs.value(), |u, v| u + v);
        self.graph.record(
            y,
            Op::Add {
                a: self.id,
                b: rhs.id,
            },
        )
    }
}

/// Elementwise `a − b` (same shapes).
impl<'g> std::ops::Sub for Var<'g> {
    type Output = Var<'g>;

    #[track_caller]
    fn sub(self, rhs: Var<'g>) -> Var<'g> {
        self.same_shape(rhs, "sub");
        let y = zip_values(&self.value(), &rhs.value(), |u, v| u - v);
        self.graph.record(
            y,
            Op::Sub {
                a: self.id,
                b: rhs.id,
            },
        )
    }
}

/// Elementwise product `a ⊙ b` (same shapes).
impl<'g> std::ops::Mul for Var<'g> {
    type Output = Var<'g>;

    #[track_caller]
    fn mul(self, rhs: Var<'g>) -> Var<'g> {
        self.same_shape(rhs, "mul");
        let y = zip_values(&self.value(), &rhs.value(), |u, v| u * v);
        self.graph.record(
            y,
            Op::Mul {
                a: self.id,
                b: rhs.id,
            },
        )
    }
}

/// `x[.., 1:, ..] − x[.., :-1, ..]` along axis `ndim − from_end`.
#[track_caller]
fn neighbour_diff(x: &ArrayD<f32>, op: &str, from_end: usize) -> ArrayD<f32> {
    assert!(
        x.ndim() >= 2,
        "{op}: expected at least 2 axes, got shape {:?}",
        x.shape()
    );
    let ax = Axis(x.ndim() - from_end);
    assert!(
        x.len_of(ax) >= 1,
        "{op}: empty axis in shape {:?}",
        x.shape()
    );
    &x.slice_axis(ax, Slice::from(1..)) - &x.slice_axis(ax, Slice::from(..-1))
}

/// What a convolution op applies to its output before storing it ([`Var::conv2d_fused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fused {
    /// Nothing: `conv2d`.
    None,
    /// The ReLU: `conv2d_relu`.
    Relu,
    /// The ReLU, then 2×2 max pooling: `conv2d_relu_max_pool2`.
    ReluMaxPool2,
}
