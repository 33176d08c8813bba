//! 2-D convolution, stride 1, zero padding — forward and both gradients — and the **one** place
//! that decides which algorithm computes each pass.
//!
//! For one image `x: C_in×H×W` and filters `w: C_out×C_in×k_h×k_w`, the output is
//! `y[o, i, j] = b[o] + Σ_{c,u,v} w[o,c,u,v] · x[c, i+u−p, j+v−p]` (zero outside the image).
//!
//! The algorithms, one file each, each with tests against the direct convolution
//! (`reference::conv2d_direct`) and as the adjoint of its forward:
//!
//! | file | computes | how |
//! |---|---|---|
//! | [`im2col`] | forward, input gradient, weight gradient, any kernel | unroll receptive fields into a matrix, one GEMM per band of rows; col2im (its adjoint) for the input gradient |
//! | [`winograd`] | forward and input gradient of 3×3, padding 1 | Winograd F(4×4, 3×3): 36 GEMMs over channels per tile batch, 4× fewer multiplies |
//! | [`direct`] | forward of 3×3, padding 1, with few input or output channels | the definition, summed in registers: 4 output channels × 16 pixels per tile |
//!
//! An input gradient reads `dy` as a [`Source`] (`source.rs`): the map, or what the backward
//! of a fused pooling or ReLU would make of it, made row by row as the kernel reads it.
//!
//! The input gradient of a 3×3, padding-1 convolution is itself such a convolution — of `dy`
//! with the flipped, transposed filters ([`flip_transpose`]) — so it runs through the forward
//! algorithms (see [`Algorithm`] and [`input_grad_algorithm`]). Winograd computes it from the
//! forward pass's own filters, on planes rotated by 180° ([`winograd::input_gradient`]), so no
//! flipped set is kept.
//!
//! Filters are constants across a style-transfer run, so their transformed forms (Winograd
//! domain; flipped, for an im2col input gradient) are computed once per [`Filters`] and kept
//! there.
//!
//! Adding an algorithm: a file here with its kernel and tests, a variant of [`Algorithm`], and a
//! rule in [`forward_algorithm`] / [`input_grad_algorithm`]; outside this folder only the memory
//! plan's count of prepared filters (`nst-transfer`'s `memory.rs`) may need to learn of it.

pub mod direct;
pub mod im2col;
mod source;
pub mod winograd;

pub use source::Source;

use super::elementwise::{self, MaskAt};
use super::isa::Isa;
use ndarray::{ArrayD, IxDyn};
use std::sync::{Arc, OnceLock};

/// The shapes of one convolution (stride 1, symmetric zero padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels (number of filters).
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Whether the filters are applied *transposed*, `w[o][c][v][u]` in place of `w[o][c][u][v]`
    /// (square kernels only). Transposing a map and its filters transposes the output —
    /// `conv(xᵀ, wᵀ) = conv(x, w)ᵀ` — so a tall image can run through a network as the wide one
    /// it is transposed, which the kernels compute faster (`Vgg::transposed` in `nst-vgg`).
    /// Winograd reads its filters' 6×6 positions transposed (no copy, see [`winograd`]); the
    /// other algorithms get the filters transposed by [`Filters::raw_for`].
    pub transposed: bool,
}

impl ConvGeometry {
    /// Output height `H + 2p − k_h + 1` (callers check it is at least 1).
    pub fn out_h(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.kh
    }

    /// Output width `W + 2p − k_w + 1`.
    pub fn out_w(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.kw
    }

    /// Rows of the im2col matrix: `K = C_in·k_h·k_w`, the length of one flattened filter.
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Multiply-adds ×2 of the forward pass: `2·C_out·K·H'·W'` (the same for each gradient).
    /// Algorithms that do fewer (Winograd) are still credited with this count, so their
    /// GFLOP/s figures are *effective* rates.
    pub fn flops(&self) -> f64 {
        2.0 * (self.c_out * self.k() * self.out_h() * self.out_w()) as f64
    }

    /// Whether the layer is a 3×3 convolution with padding 1 (output size = input size), the
    /// shape Winograd and the flipped-filter input gradient need.
    pub fn is_3x3_same(&self) -> bool {
        self.kh == 3 && self.kw == 3 && self.pad == 1
    }

    /// The geometry of the convolution that computes this one's input gradient when
    /// [`is_3x3_same`](Self::is_3x3_same): `dy` (C_out channels) in, `C_in` channels out.
    pub fn flipped(&self) -> ConvGeometry {
        ConvGeometry {
            c_in: self.c_out,
            c_out: self.c_in,
            h: self.out_h(),
            w: self.out_w(),
            ..*self
        }
    }
}

/// What a forward pass does to each output after adding the bias.
#[derive(Clone, Copy)]
pub enum Activation<'a> {
    /// Nothing: the convolution alone.
    None,
    /// `max(·, 0)`, applied as each output is stored (no pass of its own over the map).
    Relu,
    /// `max(·, 0)`, and the ReLU's mask bits (`y > 0`, as
    /// [`relu_mask`](super::elementwise::relu_mask) gives them) set into `MaskAt` as each row
    /// is stored, while it is in cache — what the ReLU's backward needs, without reading the
    /// map again.
    ReluMasked(MaskAt<'a>),
}

impl<'a> Activation<'a> {
    /// Whether `max(·, 0)` is applied.
    pub fn relu(self) -> bool {
        !matches!(self, Activation::None)
    }

    /// Where the mask bits go, if anywhere.
    pub fn mask(self) -> Option<MaskAt<'a>> {
        match self {
            Activation::ReluMasked(m) => Some(m),
            _ => None,
        }
    }
}

/// How one pass of a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// im2col + one GEMM per band ([`im2col::forward`]).
    Im2col,
    /// Winograd F(4×4, 3×3) ([`winograd::forward`]).
    Winograd4x4,
    /// Input gradient as GEMM + col2im ([`im2col::backward_input`]).
    Col2im,
    /// Direct summation ([`direct::forward`]).
    Direct,
}

impl Algorithm {
    /// A short name for profiles and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Im2col => "im2col",
            Algorithm::Winograd4x4 => "winograd F(4x4,3x3)",
            Algorithm::Col2im => "col2im",
            Algorithm::Direct => "direct",
        }
    }
}

/// Winograd is used from this many input channels (and [`WINOGRAD_MIN_OUT_CHANNELS`] output
/// channels). Its transforms cost a fixed amount per channel and tile while the GEMM work it
/// saves grows with both channel counts; at VGG's 64 channels F(4×4) is already faster than
/// im2col (`BENCHMARKS.md`), at 3 (conv1_1) the GEMMs are too thin to run well.
pub const WINOGRAD_MIN_IN_CHANNELS: usize = 32;
/// See [`WINOGRAD_MIN_IN_CHANNELS`].
pub const WINOGRAD_MIN_OUT_CHANNELS: usize = 16;
/// Below this many input channels the input gradient does not run as an im2col forward pass of
/// the flipped convolution: that would have as few *output* channels, a GEMM too thin to run
/// well (VGG's conv1_1, 3 channels: 50 ms that way, against 6 ms by col2im at 512×384). It runs
/// by [`direct`] when that takes the flipped convolution, by col2im otherwise.
pub const FLIPPED_MIN_CHANNELS: usize = 16;
/// A 3×3, padding-1 layer with at most this many input *or* output channels runs by [`direct`]
/// summation: VGG's conv1_1 (3 input channels; im2col's inner dimension would be 27) and the
/// flipped convolution of its input gradient (3 output channels). At 512×384 the two passes took
/// 30 + 31 ms by im2col and col2im (`BENCHMARKS.md`).
pub const DIRECT_MAX_CHANNELS: usize = 4;

/// The algorithm of the forward pass, for 3×3, padding-1 layers: direct summation when one side
/// has at most [`DIRECT_MAX_CHANNELS`] channels, Winograd F(4×4, 3×3) when both sides have
/// enough; im2col + GEMM for everything else. Depends on the channels and the kernel only,
/// never on the map size, so filters prepared once serve every image size.
pub fn forward_algorithm(g: &ConvGeometry) -> Algorithm {
    if !g.is_3x3_same() {
        Algorithm::Im2col
    } else if g.c_in.min(g.c_out) <= DIRECT_MAX_CHANNELS {
        Algorithm::Direct
    } else if g.c_in >= WINOGRAD_MIN_IN_CHANNELS && g.c_out >= WINOGRAD_MIN_OUT_CHANNELS {
        Algorithm::Winograd4x4
    } else {
        Algorithm::Im2col
    }
}

/// The algorithm of the input-gradient pass. For a 3×3, padding-1 layer the gradient is the
/// forward convolution of `dy` with the flipped filters, computed by that convolution's
/// [`forward_algorithm`] — its GEMMs have inner dimension `C_out` or `9·C_out`, not col2im's
/// thin `C_out`-by-pixels product followed by a scatter; for Winograd, from the forward filters
/// read transposed on rotated planes ([`winograd::input_gradient`]) — when that algorithm is
/// direct summation or the layer has at least [`FLIPPED_MIN_CHANNELS`] input channels;
/// otherwise GEMM + col2im.
pub fn input_grad_algorithm(g: &ConvGeometry) -> Algorithm {
    if !g.is_3x3_same() {
        return Algorithm::Col2im;
    }
    match forward_algorithm(&g.flipped()) {
        Algorithm::Direct => Algorithm::Direct,
        flipped if g.c_in >= FLIPPED_MIN_CHANNELS => flipped,
        _ => Algorithm::Col2im,
    }
}

/// How many independent tasks the forward pass splits into (for Winograd its GEMM stage, bands ×
/// 36 — see [`winograd::tasks`] for its other stages; for im2col bands × channel groups): what
/// bounds the threads a layer can keep busy. Depends on the shape alone, like every split in
/// this folder.
pub fn forward_tasks(g: &ConvGeometry) -> usize {
    match forward_algorithm(g) {
        Algorithm::Winograd4x4 => winograd::tasks(g),
        Algorithm::Direct => direct::tasks(g),
        _ => im2col::forward_tasks(g),
    }
}

/// `w'[c][o][u][v] = w[o][c][k_h−1−u][k_w−1−v]`: the filters of the convolution that computes
/// the input gradient of a 3×3, padding-1 convolution (`dx = conv(dy, w', pad 1)`).
pub fn flip_transpose(w: &[f32], c_out: usize, c_in: usize, taps: usize) -> Vec<f32> {
    let mut wt = vec![0.0; w.len()];
    for o in 0..c_out {
        for c in 0..c_in {
            for k in 0..taps {
                wt[(c * c_out + o) * taps + k] = w[(o * c_in + c) * taps + (taps - 1 - k)];
            }
        }
    }
    wt
}

/// One layer's filters, `C_out×C_in×k_h×k_w`, with the derived forms the algorithms consume
/// computed on first use and kept: the Winograd-domain filters (read by the forward pass and,
/// transposed, by the input gradient), and, where the input gradient runs by im2col, the
/// flipped filters (themselves a [`Filters`]). Network weights are constants for a whole run,
/// so the graph keeps one `Filters` per weight tensor and these transforms are paid once, not
/// per evaluation.
///
/// Memory: the raw filters are the weight tensor itself, shared, not copied; the Winograd form
/// is 4× the raw size for F(4×4, 3×3), and there is one, not one per pass.
#[derive(Debug)]
pub struct Filters {
    /// The raw filters, flat; `None` for flipped filters that only Winograd reads.
    raw: Option<Arc<ArrayD<f32>>>,
    c_out: usize,
    c_in: usize,
    kh: usize,
    kw: usize,
    winograd: OnceLock<Vec<f32>>,
    flipped: OnceLock<Box<Filters>>,
    transposed: OnceLock<Vec<f32>>,
}

impl Filters {
    /// Filters `w: C_out×C_in×k_h×k_w` (flat, row-major) for convolutions of geometry `g`,
    /// copied (see [`Filters::shared`]).
    #[track_caller]
    pub fn new(w: &[f32], g: &ConvGeometry) -> Filters {
        Filters::shared(flat_array(w.to_vec()), g)
    }

    /// Filters for convolutions of geometry `g` that share the weight tensor `w` (any shape
    /// holding `C_out×C_in×k_h×k_w` values in row-major order) instead of copying it.
    #[track_caller]
    pub fn shared(w: Arc<ArrayD<f32>>, g: &ConvGeometry) -> Filters {
        assert_eq!(
            w.len(),
            g.c_out * g.k(),
            "filters: length disagrees with the geometry"
        );
        assert!(w.is_standard_layout(), "filters: weights must be row-major");
        Filters {
            raw: Some(w),
            c_out: g.c_out,
            c_in: g.c_in,
            kh: g.kh,
            kw: g.kw,
            winograd: OnceLock::new(),
            flipped: OnceLock::new(),
            transposed: OnceLock::new(),
        }
    }

    /// The raw filters, `C_out×C_in×k_h×k_w`.
    ///
    /// # Panics
    /// On flipped filters computed by Winograd, which keep only their Winograd form.
    pub fn raw(&self) -> &[f32] {
        self.raw
            .as_deref()
            .and_then(|w| w.as_slice())
            .expect("raw filters are kept unless only Winograd reads them")
    }

    /// The raw filters as geometry `g` applies them: [`raw`](Self::raw), or, when
    /// `g.transposed`, each filter transposed (`w[o][c][v][u]`), computed on first use and kept
    /// (the layers that read raw filters have few channels: VGG's conv1_1, 7 KB).
    pub fn raw_for(&self, g: &ConvGeometry) -> &[f32] {
        if !g.transposed {
            return self.raw();
        }
        assert_eq!(self.kh, self.kw, "conv: transposed filters must be square");
        self.transposed
            .get_or_init(|| transpose_taps(self.raw(), self.kh))
    }

    /// The Winograd-domain filters ([`winograd::transform_filters`]), computed on first use.
    pub fn winograd(&self) -> &[f32] {
        self.winograd
            .get_or_init(|| winograd::transform_filters(self.raw(), self.c_out, self.c_in))
    }

    /// The flipped, transposed filters of the input-gradient convolution ([`flip_transpose`]),
    /// computed on first use.
    pub fn flipped(&self) -> &Filters {
        self.flipped.get_or_init(|| {
            let w = flip_transpose(self.raw(), self.c_out, self.c_in, self.kh * self.kw);
            // The flipped convolution is 3×3 with padding 1 (see `input_grad_algorithm`); its
            // algorithm depends on the channels and kernel only, not on the map size.
            let g = ConvGeometry {
                c_in: self.c_out,
                c_out: self.c_in,
                h: self.kh,
                w: self.kw,
                kh: self.kh,
                kw: self.kw,
                pad: 1,
                transposed: false,
            };
            let winograd = OnceLock::new();
            let raw = if forward_algorithm(&g) == Algorithm::Winograd4x4 {
                // Only the Winograd form is ever read: keep it, not the raw filters.
                let _ = winograd.set(winograd::transform_filters(&w, g.c_out, g.c_in));
                None
            } else {
                Some(flat_array(w))
            };
            Box::new(Filters {
                raw,
                c_out: g.c_out,
                c_in: g.c_in,
                kh: g.kh,
                kw: g.kw,
                winograd,
                flipped: OnceLock::new(),
                transposed: OnceLock::new(),
            })
        })
    }

    fn check(&self, g: &ConvGeometry) {
        assert!(
            (self.c_out, self.c_in, self.kh, self.kw) == (g.c_out, g.c_in, g.kh, g.kw),
            "conv: filters {}×{}×{}×{} do not match the geometry {g:?}",
            self.c_out,
            self.c_in,
            self.kh,
            self.kw
        );
    }
}

/// Each `k×k` filter of `w` (flat, `k²` taps a filter) transposed: `w'[·][v][u] = w[·][u][v]`.
fn transpose_taps(w: &[f32], k: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for (dst, src) in t.chunks_exact_mut(k * k).zip(w.chunks_exact(k * k)) {
        for u in 0..k {
            for v in 0..k {
                dst[v * k + u] = src[u * k + v];
            }
        }
    }
    t
}

/// `w` as a shared 1-D array (the storage of [`Filters`] they own).
fn flat_array(w: Vec<f32>) -> Arc<ArrayD<f32>> {
    Arc::new(ArrayD::from_shape_vec(IxDyn(&[w.len()]), w).expect("a 1-D shape fits any length"))
}

/// Forward convolution of one image: `x: C_in×H×W`, optional `bias: C_out`; returns
/// `y: C_out×H'×W'`, finished as `act` says (`max(y, 0)`, and its mask), by the algorithm
/// [`forward_algorithm`] picks.
pub fn conv2d_forward(
    x: &[f32],
    f: &Filters,
    bias: Option<&[f32]>,
    act: Activation,
    g: &ConvGeometry,
) -> Vec<f32> {
    f.check(g);
    match forward_algorithm(g) {
        Algorithm::Winograd4x4 => winograd::forward(x, f.winograd(), bias, act, g),
        Algorithm::Direct => direct::forward(Source::Planes(x), f.raw_for(g), bias, act, g),
        _ => {
            let y = im2col::forward(x, f.raw_for(g), bias, act.relu(), g);
            if let Some(mask) = act.mask() {
                mask.set(Isa::detect(), &y, 0);
            }
            y
        }
    }
}

/// `maxpool2(max(conv(x) + bias, 0))` of one image: the pooled planes `C_out×⌊H'/2⌋×⌊W'/2⌋` and
/// each one's window winner (as [`pool::max_pool2_forward`](super::pool::max_pool2_forward)
/// gives them). The Winograd path pools in its output transform, never storing the map; the
/// others pool the map they computed.
pub fn conv2d_forward_relu_max_pool(
    x: &[f32],
    f: &Filters,
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> (Vec<f32>, Vec<u8>) {
    f.check(g);
    match forward_algorithm(g) {
        Algorithm::Winograd4x4 => winograd::forward_relu_max_pool(x, f.winograd(), bias, g),
        _ => {
            let y = conv2d_forward(x, f, bias, Activation::Relu, g);
            super::pool::max_pool2_forward(&y, g.c_out, g.out_h(), g.out_w())
        }
    }
}

/// Input gradient of one image, `dx` for `dy: C_out×H'×W'` given as a [`Source`]
/// (the map, or the pooled gradient a fused pooling's backward would unpool); returns
/// `C_in×H×W`, by the algorithm [`input_grad_algorithm`] picks. The Winograd path makes an
/// unpooled `dy`'s rows as it reads them; the others unpool it first.
pub fn conv2d_backward_input(dy: Source, f: &Filters, g: &ConvGeometry) -> Vec<f32> {
    f.check(g);
    match input_grad_algorithm(g) {
        Algorithm::Col2im => im2col::backward_input(&as_map(dy, g), f.raw_for(g), g),
        // The forward pass's own Winograd filters, read transposed, on the reversed planes.
        Algorithm::Winograd4x4 => winograd::input_gradient(dy, f.winograd(), g),
        // The direct kernel reads `dy` a row at a time: unpooled or masked as it copies them.
        Algorithm::Direct => {
            let flipped = g.flipped();
            direct::forward(
                dy,
                f.flipped().raw_for(&flipped),
                None,
                Activation::None,
                &flipped,
            )
        }
        Algorithm::Im2col => conv2d_forward(
            &as_map(dy, g),
            f.flipped(),
            None,
            Activation::None,
            &g.flipped(),
        ),
    }
}

/// `dx += ` [`conv2d_backward_input`]'s result, with the same bits: the Winograd path adds as
/// it stores (no second map-sized buffer, no pass to add it), the others add their result.
pub fn conv2d_backward_input_add(dy: Source, f: &Filters, g: &ConvGeometry, dx: &mut [f32]) {
    f.check(g);
    match input_grad_algorithm(g) {
        Algorithm::Winograd4x4 => winograd::input_gradient_from(dy, f.winograd(), g, dx, true),
        _ => elementwise::add_assign(dx, &conv2d_backward_input(dy, f, g)),
    }
}

/// `dy` as a map, `C_out×H'×W'`: borrowed, or unpooled as the pooling's backward would
/// (`pool::max_pool2_backward`), or masked as the ReLU's would.
fn as_map<'a>(dy: Source<'a>, g: &ConvGeometry) -> std::borrow::Cow<'a, [f32]> {
    match dy {
        Source::Planes(y) => std::borrow::Cow::Borrowed(y),
        Source::Unpooled { g: gp, argmax } => std::borrow::Cow::Owned(
            super::pool::max_pool2_backward(gp, argmax, g.c_out, g.out_h(), g.out_w()),
        ),
        Source::Masked { g, mask, first_bit } => {
            let mut y = vec![0.0; g.len()];
            let isa = Isa::detect();
            elementwise::relu_backward_copy_with(isa, g, mask, first_bit, &mut y);
            std::borrow::Cow::Owned(y)
        }
    }
}

/// Weight gradient of one image: `dW = dY · colᵀ` ([`im2col::backward_weight`]), returned flat,
/// `C_out×C_in×k_h×k_w`. Style transfer never needs it; the gradient checks do.
pub fn conv2d_backward_weight(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let dw = im2col::backward_weight(x, dy, g);
    // The gradient of the filters as applied; transposed back, it is the weight tensor's.
    if g.transposed {
        transpose_taps(&dw, g.kh)
    } else {
        dw
    }
}
