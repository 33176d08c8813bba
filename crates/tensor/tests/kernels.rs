//! The fast kernels against their naive twins, on awkward shapes and on shapes large enough to
//! span several parallel tiles; and determinism across thread counts.

mod common;

use common::{random, random_vec, rng};
use nst_tensor::kernels::conv::{self, direct, im2col, winograd, Algorithm, ConvGeometry, Filters};
use nst_tensor::kernels::conv::{Activation, Source};
use nst_tensor::kernels::gemm::{gemm_with, Backend, MatMut, MatRef};
use nst_tensor::kernels::isa::Isa;
use nst_tensor::kernels::{elementwise, gram, matmul, pool, reference};
use nst_tensor::Graph;
use rayon::prelude::*;

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "element {i}: {x} vs {y}"
        );
    }
}

fn geo(c_in: usize, h: usize, w: usize, c_out: usize, k: usize, pad: usize) -> ConvGeometry {
    ConvGeometry {
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        pad,
        transposed: false,
    }
}

/// Runs a forward pass with `Activation::ReluMasked`, its mask placed from bit `first` of a
/// fresh mask (as image `first / len` of a batch would be, or mid-word), and checks the bits it
/// set against `relu_mask` of the values it returned, placed the same way. Returns the values.
fn masked_forward(first: usize, run: impl FnOnce(Activation) -> Vec<f32>) -> Vec<f32> {
    let mut words = Vec::new();
    let y = {
        // Room for any map the tests use; trimmed below to the map's length.
        words.resize((first + (1 << 20)).div_ceil(64), 0u64);
        let writer = elementwise::MaskWriter::new(&mut words);
        run(Activation::ReluMasked(writer.at(first)))
    };
    let mut placed = vec![0.0f32; first];
    placed.extend(&y);
    let want = elementwise::relu_mask(&placed);
    assert_eq!(
        &words[..want.len()],
        &want[..],
        "mask set as the rows were stored, from bit {first}"
    );
    assert!(
        words[want.len()..].iter().all(|&w| w == 0),
        "bits set past the map"
    );
    y
}

#[test]
fn conv_forward_matches_direct_convolution() {
    let cases = [
        geo(3, 5, 7, 4, 3, 1),
        geo(1, 1, 1, 2, 3, 1),   // 1×1 map
        geo(2, 2, 3, 3, 5, 2),   // kernel larger than the map
        geo(1, 9, 4, 1, 1, 0),   // 1×1 kernel
        geo(3, 37, 45, 5, 3, 1), // many bands
        geo(2, 6, 5, 3, 3, 0),
        geo(16, 3, 200, 8, 3, 1), // wide rows: bands of a single row
    ];
    for (i, g) in cases.iter().enumerate() {
        let mut r = rng(100 + i as u64);
        let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
        let w = random_vec(&mut r, &[g.c_out * g.k()]);
        let b = random_vec(&mut r, &[g.c_out]);
        let naive = reference::conv2d_direct(&x, &w, Some(&b), g);
        // The dispatching entry and the general im2col path.
        let f = Filters::new(&w, g);
        close(
            &conv::conv2d_forward(&x, &f, Some(&b), Activation::None, g),
            &naive,
            1e-5,
        );
        close(&im2col::forward(&x, &w, Some(&b), false, g), &naive, 1e-5);
        // The fused ReLU: exactly max(·, 0) of the same sums.
        let relu: Vec<f32> = im2col::forward(&x, &w, Some(&b), false, g)
            .iter()
            .map(|v| v.max(0.0))
            .collect();
        assert_eq!(im2col::forward(&x, &w, Some(&b), true, g), relu);
        // The dispatcher's ReLU with its mask: the same values, and the mask of them.
        for first in [0, 37] {
            let y = masked_forward(first, |act| conv::conv2d_forward(&x, &f, Some(&b), act, g));
            assert_eq!(y, relu, "case {i}: masked ReLU differs");
        }
    }
}

/// Winograd's bands (whole tile rows) hold a multiple of the GEMM kernel's 16-tile vectors
/// wherever a band height near the target allows it — in portrait as in landscape (a band of
/// 72 tiles computes 80).
#[test]
fn winograd_bands_fill_whole_vectors() {
    let shapes = [
        (384, 512),
        (512, 384),
        (96, 128),
        (128, 96),
        (48, 64),
        (64, 48),
        (32, 24),
    ];
    for (h, w) in shapes {
        let g = geo(64, h, w, 64, 3, 1);
        let bands = winograd::tasks(&g) / 36;
        let (tile_rows, tile_cols) = (h.div_ceil(4), w.div_ceil(4));
        let rows = tile_rows.div_ceil(bands);
        assert_eq!(tile_rows.div_ceil(rows), bands, "{h}×{w}: equal bands");
        assert_eq!(
            rows * tile_cols % 16,
            0,
            "{h}×{w}: {rows} rows of {tile_cols} tiles"
        );
    }
}

/// Layers with large filters (`C_in · C_out ≥ 256 · 512`: VGG's conv4 and conv5) get bands of
/// about 192 tiles, the others about 64, and the workspace a band needs follows: VGG16 at
/// 1024×768.
#[test]
fn winograd_bands_grow_with_the_filters() {
    // The bands of a layer (from its GEMM tasks, 36 a band) and one band's workspace.
    let bands = |g: &ConvGeometry| (winograd::tasks(g) / 36, winograd::band_workspace(g));
    let band_bytes =
        |c_in: usize, c_out: usize, tiles: usize| (4 * 36 * (c_in + c_out) * tiles) as u64;
    // conv4_2: a 128×96 map, 32×24 tiles, in 4 bands of 6 tile rows.
    assert_eq!(
        bands(&geo(512, 96, 128, 512, 3, 1)),
        (4, band_bytes(512, 512, 192))
    );
    // conv4_1 (256 → 512) at 512×384: its whole 16×12-tile map is one band.
    assert_eq!(
        bands(&geo(256, 48, 64, 512, 3, 1)),
        (1, band_bytes(256, 512, 192))
    );
    // conv3_2 (256 → 256): a 256×192 map, 64×48 tiles, one tile row (64 tiles) a band.
    assert_eq!(
        bands(&geo(256, 192, 256, 256, 3, 1)),
        (48, band_bytes(256, 256, 64))
    );
    // A tiny image's deep layers have empty maps: no bands, no workspace.
    assert_eq!(bands(&geo(512, 0, 0, 512, 3, 1)), (0, 0));
    assert_eq!(bands(&geo(512, 3, 0, 512, 3, 1)), (0, 0));
}

/// Winograd F(4×4, 3×3) itself, on any channel count (the dispatcher uses it from
/// `WINOGRAD_MIN_IN_CHANNELS`): forward against direct convolution, and its input gradient (the
/// flipped, transposed filters) as the adjoint, on odd sizes, 1×1 maps, maps smaller than a
/// tile, sizes that are not multiples of 4, several bands and several channel groups.
#[test]
fn winograd_matches_direct_convolution() {
    for (i, g) in [
        geo(3, 5, 7, 4, 3, 1),
        geo(1, 1, 1, 2, 3, 1),   // 1×1 map
        geo(2, 3, 2, 1, 3, 1),   // smaller than one 4×4 tile
        geo(5, 37, 45, 3, 3, 1), // odd sizes, partial tiles on both edges
        geo(2, 2, 203, 3, 3, 1), // wide rows
        geo(3, 70, 70, 2, 3, 1), // several bands of tile rows
        geo(130, 9, 6, 5, 3, 1), // three channel groups
        geo(2, 5, 509, 3, 3, 1), // one tile row per band; the last band only a dropped row
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(170 + i as u64);
        let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
        let w = random_vec(&mut r, &[g.c_out * g.k()]);
        let b = random_vec(&mut r, &[g.c_out]);
        let f = Filters::new(&w, g);
        let direct = reference::conv2d_direct(&x, &w, Some(&b), g);
        // Every instruction-set build of the transforms this processor can run: each matches
        // the direct convolution, and they agree bit for bit (same operations, same order).
        let builds: Vec<Vec<f32>> = Isa::available()
            .into_iter()
            .map(|isa| winograd::forward_with(isa, &x, f.winograd(), Some(&b), Activation::None, g))
            .collect();
        for (y, isa) in builds.iter().zip(Isa::available()) {
            close_to_scale(y, &direct, WINOGRAD_TOL);
            assert_eq!(
                y, &builds[0],
                "case {i}: the instruction-set builds disagree"
            );
            // The fused ReLU: exactly max(·, 0) of the same values.
            let relu: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
            let fused =
                winograd::forward_with(isa, &x, f.winograd(), Some(&b), Activation::Relu, g);
            assert_eq!(fused, relu, "case {i}: fused ReLU differs ({isa:?})");
            // And its mask, set as the output transform stores each row (rows straddling mask
            // words at these widths, from bit 0 and from mid-word).
            for first in [0, 37] {
                let y = masked_forward(first, |act| {
                    winograd::forward_with(isa, &x, f.winograd(), Some(&b), act, g)
                });
                assert_eq!(y, relu, "case {i}: masked ReLU differs ({isa:?})");
            }
            // And pooled as it is stored: the same values and winners (ties among the ReLU's
            // zeros included) as the pooling kernel on the stored map.
            let pooled = winograd::forward_relu_max_pool_with(isa, &x, f.winograd(), Some(&b), g);
            let want = pool::max_pool2_forward(&relu, g.c_out, g.h, g.w);
            assert_eq!(pooled, want, "case {i}: fused pooling differs ({isa:?})");
            // Back through that pooling: the input gradient made from the pooled gradient
            // and the winners, stored or added, equals the one of the unpooled map.
            let (_, winners) = &want;
            let gp = random_vec(&mut r, &[winners.len()]);
            let dy = pool::max_pool2_backward(&gp, winners, g.c_out, g.h, g.w);
            let u = f.winograd();
            let source = Source::Unpooled {
                g: &gp,
                argmax: winners,
            };
            let mut unpooled = vec![f32::NAN; g.c_in * g.h * g.w];
            winograd::input_gradient_from_with(isa, source, u, g, &mut unpooled, false);
            assert_eq!(
                unpooled,
                winograd::input_gradient_with(isa, Source::Planes(&dy), u, g),
                "case {i}: unpooled input gradient differs ({isa:?})"
            );
            let base = random_vec(&mut r, &[g.c_in * g.h * g.w]);
            let (mut fused_acc, mut acc) = (base.clone(), base);
            winograd::input_gradient_from_with(isa, source, u, g, &mut fused_acc, true);
            winograd::input_gradient_from_with(isa, Source::Planes(&dy), u, g, &mut acc, true);
            assert_eq!(
                fused_acc, acc,
                "case {i}: unpooled addition differs ({isa:?})"
            );
        }
        // The input gradient from the forward filters (reversed planes, transposed U):
        // ⟨conv(x), dy⟩ = ⟨x, dx⟩, equal to the flipped-filter convolution's, and the same bits
        // from every instruction-set build.
        let dy = random_vec(&mut r, &[g.c_out * g.h * g.w]);
        let grads: Vec<Vec<f32>> = Isa::available()
            .into_iter()
            .map(|isa| winograd::input_gradient_with(isa, Source::Planes(&dy), f.winograd(), g))
            .collect();
        assert!(
            grads.iter().all(|d| d == &grads[0]),
            "case {i}: builds disagree"
        );
        // Added into a gradient already there, as it is stored: the same bits as adding the
        // result afterwards, from every build.
        let base = random_vec(&mut r, &[g.c_in * g.h * g.w]);
        let want: Vec<f32> = base.iter().zip(&grads[0]).map(|(a, d)| a + d).collect();
        for isa in Isa::available() {
            let mut acc = base.clone();
            let dy = Source::Planes(&dy);
            winograd::input_gradient_from_with(isa, dy, f.winograd(), g, &mut acc, true);
            assert_eq!(acc, want, "case {i}: the addition differs ({isa:?})");
        }
        // Through a ReLU's mask as the rows are read (an image's bits starting mid-word, as
        // the second image of a batch's do): the same bits as masking the map first.
        let z = random_vec(&mut r, &[3 + dy.len()]);
        let mask = elementwise::relu_mask(&z);
        let masked: Vec<f32> = dy
            .iter()
            .zip(&z[3..])
            .map(|(&d, &z)| if z > 0.0 { d } else { 0.0 })
            .collect();
        for isa in Isa::available() {
            let source = Source::Masked {
                g: &dy,
                mask: &mask,
                first_bit: 3,
            };
            let mut got = vec![f32::NAN; g.c_in * g.h * g.w];
            winograd::input_gradient_from_with(isa, source, f.winograd(), g, &mut got, false);
            let want = winograd::input_gradient_with(isa, Source::Planes(&masked), f.winograd(), g);
            assert_eq!(
                got, want,
                "case {i}: masked input gradient differs ({isa:?})"
            );
        }
        assert_adjoint(g, &x, &w, &dy, &grads[0], i);
        let flipped = reference::conv2d_direct(
            &dy,
            &conv::flip_transpose(&w, g.c_out, g.c_in, 9),
            None,
            &g.flipped(),
        );
        close_to_scale(&grads[0], &flipped, WINOGRAD_TOL);
    }
    // The dispatcher's Winograd path end to end, at VGG-like channel counts.
    let g = geo(512, 3, 5, 64, 3, 1);
    assert_eq!(conv::forward_algorithm(&g), Algorithm::Winograd4x4);
    assert_eq!(conv::input_grad_algorithm(&g), Algorithm::Winograd4x4);
    let mut r = rng(180);
    let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
    let w = random_vec(&mut r, &[g.c_out * g.k()]);
    close_to_scale(
        &conv::conv2d_forward(&x, &Filters::new(&w, &g), None, Activation::None, &g),
        &reference::conv2d_direct(&x, &w, None, &g),
        WINOGRAD_TOL,
    );
}

/// Direct summation (VGG's conv1_1 and its input gradient) against the reference, for every
/// instruction-set build the processor has: few input channels (the forward), few output
/// channels (the flipped convolution of an input gradient), widths that leave 64-, 32-, 16- and
/// 8-pixel tiles and single pixels, 1×1 maps, partial channel windows and groups, several
/// bands; the fused ReLU.
#[test]
fn direct_summation_matches_direct_convolution() {
    for (i, g) in [
        geo(3, 5, 7, 4, 3, 1),    // narrower than one 8-pixel tile
        geo(1, 1, 1, 2, 3, 1),    // 1×1 map
        geo(3, 19, 61, 64, 3, 1), // conv1_1-like: 16- and 8-pixel tiles and a tail, 3 bands
        geo(64, 9, 33, 3, 3, 1),  // its input gradient's shape: 16 windows, one group of 3
        geo(6, 17, 24, 1, 3, 1),  // a partial window (4 + 2 channels), one output
        geo(2, 2, 3, 5, 3, 1),    // a group of 4 and a group of 1
        geo(3, 11, 121, 8, 3, 1), // 121 = 64 + 32 + 16 + 8 + 1: every AVX-512 and AVX2 tile
        geo(64, 5, 100, 3, 3, 1), // an input gradient's shape, 100 = 64 + 32 + 4
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(conv::forward_algorithm(g), Algorithm::Direct, "case {i}");
        let mut r = rng(190 + i as u64);
        let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
        let w = random_vec(&mut r, &[g.c_out * g.k()]);
        let b = random_vec(&mut r, &[g.c_out]);
        let want = reference::conv2d_direct(&x, &w, Some(&b), g);
        let mut fused_builds = Vec::new();
        for isa in Isa::available() {
            let y =
                direct::forward_with(isa, Source::Planes(&x), &w, Some(&b), Activation::None, g);
            close(&y, &want, 1e-5);
            let relu: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
            let fused =
                direct::forward_with(isa, Source::Planes(&x), &w, Some(&b), Activation::Relu, g);
            assert_eq!(fused, relu, "case {i}: fused ReLU differs ({isa:?})");
            for first in [0, 37] {
                let y = masked_forward(first, |act| {
                    direct::forward_with(isa, Source::Planes(&x), &w, Some(&b), act, g)
                });
                assert_eq!(y, relu, "case {i}: masked ReLU differs ({isa:?})");
            }
            // Reading `x` through a ReLU's mask (bits from a mid-word offset, and from 0): the
            // same bits as convolving the masked input.
            for first_bit in [0, 5] {
                let z = random_vec(&mut r, &[first_bit + x.len()]);
                let mask = elementwise::relu_mask(&z);
                let masked: Vec<f32> = x
                    .iter()
                    .zip(&z[first_bit..])
                    .map(|(&v, &z)| if z > 0.0 { v } else { 0.0 })
                    .collect();
                let source = Source::Masked {
                    g: &x,
                    mask: &mask,
                    first_bit,
                };
                assert_eq!(
                    direct::forward_with(isa, source, &w, Some(&b), Activation::None, g),
                    direct::forward_with(
                        isa,
                        Source::Planes(&masked),
                        &w,
                        Some(&b),
                        Activation::None,
                        g
                    ),
                    "case {i}: masked input differs ({isa:?}, bit {first_bit})"
                );
            }
            if isa >= Isa::Avx2Fma {
                fused_builds.push(y);
            }
        }
        // The AVX2 and AVX-512F tiles add the same taps in the same order, each by a fused
        // multiply-add: the same bits (the baseline, without FMA, rounds differently).
        assert!(
            fused_builds.windows(2).all(|p| p[0] == p[1]),
            "case {i}: the AVX2 and AVX-512F builds disagree"
        );
    }
    // Through the dispatcher, conv1_1's input gradient is the flipped convolution by direct
    // summation, and the adjoint of the forward.
    let g = geo(3, 13, 29, 64, 3, 1);
    assert_eq!(conv::input_grad_algorithm(&g), Algorithm::Direct);
    let mut r = rng(199);
    let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
    let w = random_vec(&mut r, &[g.c_out * g.k()]);
    let dy = random_vec(&mut r, &[g.c_out * g.h * g.w]);
    let dx = conv::conv2d_backward_input(Source::Planes(&dy), &Filters::new(&w, &g), &g);
    assert_adjoint(&g, &x, &w, &dy, &dx, 0);
}

/// Winograd F(4×4, 3×3)'s agreement with the direct convolution (f64-accumulated): the largest
/// error relative to the largest output magnitude. Its transforms amplify f32 rounding (measured
/// up to 7e-6 on these cases, at 130 channels); a wrong transform coefficient gives errors of order 1.
const WINOGRAD_TOL: f32 = 3e-5;

/// `a` equals `b` to `tol` relative to `b`'s largest magnitude (and says the worst element).
fn close_to_scale(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let (i, err) = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |best, (i, e)| if e > best.1 { (i, e) } else { best },
        );
    assert!(
        err <= tol * scale,
        "element {i}: {} vs {}, error {err:e} > {tol:e} × scale {scale}",
        a[i],
        b[i]
    );
}

/// Every input-gradient path the dispatcher takes (direct summation, the flipped convolution by
/// im2col or Winograd, GEMM + col2im) and col2im on its own are the adjoint
/// of the *direct* convolution: ⟨conv(x), dy⟩ = ⟨x, dx(dy)⟩ for random x and dy.
#[test]
fn input_gradients_are_the_adjoint_of_direct_convolution() {
    let cases = [
        geo(3, 5, 7, 4, 3, 1),    // few input channels: direct summation
        geo(8, 7, 5, 6, 3, 1),    // too few for the flipped convolution by im2col: col2im
        geo(16, 7, 5, 5, 3, 1),   // 16 input channels: the flipped convolution (im2col)
        geo(20, 9, 11, 40, 3, 1), // the flipped convolution by Winograd
        geo(1, 1, 1, 2, 3, 1),
        geo(4, 37, 9, 3, 3, 1),
        geo(2, 2, 3, 3, 5, 2),
        geo(2, 6, 5, 3, 3, 0),
    ];
    for (i, g) in cases.iter().enumerate() {
        let mut r = rng(150 + i as u64);
        let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
        let w = random_vec(&mut r, &[g.c_out * g.k()]);
        let dy = random_vec(&mut r, &[g.c_out * g.out_h() * g.out_w()]);
        for dx in [
            conv::conv2d_backward_input(Source::Planes(&dy), &Filters::new(&w, g), g),
            im2col::backward_input(&dy, &w, g),
        ] {
            assert_adjoint(g, &x, &w, &dy, &dx, i);
        }
    }
}

/// `dx` is the input gradient of the direct convolution for `dy` if ⟨conv(x), dy⟩ = ⟨x, dx⟩
/// (to f32 rounding) for the random `x`.
fn assert_adjoint(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32], dx: &[f32], case: usize) {
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| *p as f64 * *q as f64)
            .sum::<f64>()
    };
    let lhs = dot(&reference::conv2d_direct(x, w, None, g), dy);
    let rhs = dot(x, dx);
    assert!(
        (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
        "case {case}: {lhs} vs {rhs}"
    );
}

/// col2im must be the exact adjoint of im2col: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
#[test]
fn col2im_is_the_adjoint_of_im2col() {
    for (i, g) in [
        geo(2, 5, 7, 1, 3, 1),
        geo(1, 2, 2, 1, 5, 2),
        geo(3, 6, 4, 1, 3, 0),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(200 + i as u64);
        let x = random_vec(&mut r, &[g.c_in * g.h * g.w]);
        let (y0, y1) = (1.min(g.out_h() - 1), g.out_h());
        let n = (y1 - y0) * g.out_w();
        let c = random_vec(&mut r, &[g.k() * n]);
        let mut col = vec![f32::NAN; g.k() * n];
        im2col::im2col_band(&x, g, y0, y1, &mut col);
        let rows = y1 - y0 + g.kh - 1;
        let mut band = vec![0.0; g.c_in * rows * g.w];
        im2col::col2im_band(&c, g, y0, y1, &mut band);
        let lhs: f64 = col
            .iter()
            .zip(&c)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        // Band row t is input row y0 + t − pad; padding rows pair with nothing.
        let mut rhs = 0.0f64;
        for ch in 0..g.c_in {
            for t in 0..rows {
                let iy = (y0 + t) as isize - g.pad as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for j in 0..g.w {
                    let xv = x[(ch * g.h + iy as usize) * g.w + j] as f64;
                    rhs += xv * band[(ch * rows + t) * g.w + j] as f64;
                }
            }
        }
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "case {i}: {lhs} vs {rhs}"
        );
    }
}

/// `v`'s rows of `cols` values, each followed by three 9s: a matrix inside a wider buffer.
fn padded_rows(v: &[f32], cols: usize) -> Vec<f32> {
    v.chunks(cols)
        .flat_map(|row| row.iter().copied().chain([9.0; 3]))
        .collect()
}

/// The `rows × cols` matrix that [`padded_rows`] laid out.
fn padded_view(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef {
        data,
        rows,
        cols,
        row_stride: cols + 3,
        col_stride: 1,
    }
}

/// Both GEMM libraries are built with their AVX-512 micro-kernels, so that an AVX-512 processor
/// runs them: `matrixmultiply` compiles its own only with its `avx512` feature, the `gemm` crate
/// only with `x86-v4`. The workspace once turned `matrixmultiply`'s off with
/// `default-features = false`, and nothing noticed on AVX2 machines. Asks Cargo for the features
/// it resolves (`cargo tree`, offline).
#[test]
fn gemm_libraries_are_built_with_their_avx512_kernels() {
    for (package, feature) in [("matrixmultiply", "avx512"), ("gemm", "x86-v4")] {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "-e",
                "features",
                "-p",
                "nst-tensor",
                "-i",
                package,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && tree.contains(&format!("{package} feature \"{feature}\"")),
            "{package} is built without its {feature:?} feature:\n{tree}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every backend, whichever this processor would pick: transposed and strided views, `alpha` and
/// `beta` (`beta = 0` ignores NaN in C), sub-matrices of a larger buffer, and degenerate shapes.
#[test]
fn gemm_backends_handle_transposed_and_strided_views() {
    for backend in Backend::ALL {
        let mut r = rng(300);
        for (m, k, n) in [(7, 5, 3), (1, 1, 1), (1, 9, 1), (33, 17, 65), (4, 300, 2)] {
            let case = format!("{} on {m}×{k}×{n}", backend.name());
            let a = random_vec(&mut r, &[m * k]);
            let b = random_vec(&mut r, &[k * n]);
            let want = reference::matmul_naive(&a, &b, m, k, n);
            // Cᵀ = Bᵀ·Aᵀ into a column-major C: the same numbers through every stride path.
            let mut c = vec![0.0; m * n];
            let cm = MatMut {
                data: &mut c,
                rows: n,
                cols: m,
                row_stride: 1,
                col_stride: n,
            };
            gemm_with(
                backend,
                1.0,
                MatRef::row_major(&b, k, n).t(),
                MatRef::row_major(&a, m, k).t(),
                0.0,
                cm,
            );
            close(&c, &want, 1e-5);
            // beta = 0 ignores NaN in C.
            let mut c = vec![f32::NAN; m * n];
            gemm_with(
                backend,
                1.0,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                0.0,
                MatMut::row_major(&mut c, m, n),
            );
            close(&c, &want, 1e-5);
            // C ← −0.5·A·B + 2·C, with A, B and C inside wider buffers (row stride > columns).
            let (a_wide, b_wide) = (padded_rows(&a, k), padded_rows(&b, n));
            let c0 = random_vec(&mut r, &[m * n]);
            let mut c_wide = padded_rows(&c0, n);
            gemm_with(
                backend,
                -0.5,
                padded_view(&a_wide, m, k),
                padded_view(&b_wide, k, n),
                2.0,
                MatMut {
                    data: &mut c_wide,
                    rows: m,
                    cols: n,
                    row_stride: n + 3,
                    col_stride: 1,
                },
            );
            for i in 0..m {
                for j in 0..n {
                    let (got, expected) = (
                        c_wide[i * (n + 3) + j],
                        -0.5 * want[i * n + j] + 2.0 * c0[i * n + j],
                    );
                    assert!(
                        (got - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                        "{case}: ({i}, {j}): {got} vs {expected}"
                    );
                }
                assert_eq!(
                    &c_wide[i * (n + 3) + n..i * (n + 3) + n + 3],
                    &[9.0; 3],
                    "{case}: past row {i}"
                );
            }
        }
    }
}

#[test]
fn matmul_matches_the_triple_loop() {
    let mut r = rng(301);
    let (m, k, n) = (37, 11, 9); // several row blocks
    let a = random_vec(&mut r, &[m * k]);
    let b = random_vec(&mut r, &[k * n]);
    let got = matmul::matmul(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
    close(&got, &reference::matmul_naive(&a, &b, m, k, n), 1e-5);

    // Wide: column blocks written in place into C, the last one narrower; B also read
    // transposed (strided columns).
    let (m, k, n) = (5, 7, 3 * 4096 + 77);
    let a = random_vec(&mut r, &[m * k]);
    let b = random_vec(&mut r, &[k * n]);
    let want = reference::matmul_naive(&a, &b, m, k, n);
    let got = matmul::matmul(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
    close(&got, &want, 1e-5);
    let mut bt = vec![0.0; n * k];
    for i in 0..k {
        for j in 0..n {
            bt[j * k + i] = b[i * n + j];
        }
    }
    let got_t = matmul::matmul(
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&bt, n, k).t(),
    );
    close(&got_t, &want, 1e-5);
    // No inner dimension: a wide product of zeros, nothing of B read.
    let got = matmul::matmul(
        MatRef::row_major(&[], 3, 0),
        MatRef::row_major(&[], 0, 5000),
    );
    assert_eq!(got, vec![0.0; 3 * 5000]);
}

#[test]
fn gram_matches_f64_dot_products_on_every_build() {
    let mut r = rng(302);
    for (c, m) in [
        (1, 1),
        (3, 5),                  // fewer rows than a register block, a partial step
        (5, 17),                 // a register block and an edge row; one full step and a tail
        (7, 1040),               // a chunk and a bit more
        (67, 2100),              // two tiles (the second 3 rows), three chunks
        (130, 50),               // three tiles, six tile pairs
        (64, 8 * 3 * 1024 + 13), // one tile pair: its pixels in groups of several chunks
    ] {
        let f = random_vec(&mut r, &[c * m]);
        let builds: Vec<(Isa, Vec<f32>)> = Isa::available()
            .into_iter()
            .map(|isa| (isa, gram::gram_with(isa, &f, c, m)))
            .collect();
        for (isa, g) in &builds {
            for i in 0..c {
                for j in 0..c {
                    let (a, b) = (&f[i * m..(i + 1) * m], &f[j * m..(j + 1) * m]);
                    let want: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
                    let scale: f64 = a
                        .iter()
                        .zip(b)
                        .map(|(x, y)| (*x as f64 * *y as f64).abs())
                        .sum();
                    let got = g[i * c + j];
                    assert!(
                        (got as f64 - want).abs() <= 2e-6 * scale,
                        "{c}×{m}, {isa:?}: G[{i}][{j}] = {got}, want {want}"
                    );
                    assert_eq!(got, g[j * c + i], "{c}×{m}, {isa:?}: G is not symmetric");
                }
            }
        }
        // The fused builds sum in the same order, whatever their register blocks.
        let fused: Vec<&(Isa, Vec<f32>)> = builds
            .iter()
            .filter(|(isa, _)| *isa >= Isa::Avx2Fma)
            .collect();
        for pair in fused.windows(2) {
            assert_eq!(
                pair[0].1, pair[1].1,
                "{c}×{m}: {:?} and {:?} differ",
                pair[0].0, pair[1].0
            );
        }
    }
}

#[test]
fn max_pool_matches_naive_on_odd_sizes() {
    let mut r = rng(400);
    for (c, h, w) in [(2, 5, 7), (1, 1, 1), (3, 2, 3), (1, 8, 8)] {
        let x = random_vec(&mut r, &[c * h * w]);
        let (y, _) = pool::max_pool2_forward(&x, c, h, w);
        assert_eq!(y, reference::max_pool2_naive(&x, c, h, w));
    }
}

#[test]
fn max_pool_ties_send_the_gradient_to_the_first_maximum_only() {
    // One window, all four equal; a second window with the max repeated in its bottom row.
    let x = [1.0, 1.0, 0.0, 2.0, 1.0, 1.0, 2.0, 2.0];
    let (y, arg) = pool::max_pool2_forward(&x, 1, 2, 4);
    assert_eq!(y, vec![1.0, 2.0]);
    let dx = pool::max_pool2_backward(&[10.0, 20.0], &arg, 1, 2, 4);
    assert_eq!(dx, vec![10.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0]);
}

/// The rule `max_pool2_forward` documents: a NaN never wins a window against a number, but a NaN
/// in the first position stays (it compares false both ways); the gradient follows the winner.
#[test]
fn max_pool_nan_wins_only_from_the_first_position() {
    let nan = f32::NAN;
    // Windows (row-major): [NaN, 1, 2, 0] and [1, NaN, 0, 3]; a 2×5 plane drops its last column.
    let x = [nan, 1.0, 1.0, nan, 9.0, 2.0, 0.0, 0.0, 3.0, 9.0];
    let (y, arg) = pool::max_pool2_forward(&x, 1, 2, 5);
    assert!(y[0].is_nan() && arg[0] == 0);
    assert_eq!((y[1], arg[1]), (3.0, 3));
    let dx = pool::max_pool2_backward(&[10.0, 20.0], &arg, 1, 2, 5);
    assert_eq!(dx, vec![10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0.0]);
}

/// The bit mask keeps exactly the positive outputs, across word and chunk boundaries (lengths
/// that are not multiples of 64 or of the parallel chunk), zero, −0, NaN and −∞ counting as not
/// positive, +∞ and the smallest subnormal as positive — mask and masking from every
/// instruction-set build.
#[test]
fn relu_mask_passes_the_gradient_where_the_output_is_positive() {
    let mut r = rng(410);
    for n in [1, 7, 63, 64, 65, 70_001, (1 << 16) + 3] {
        let mut y = random_vec(&mut r, &[n]);
        let specials = [0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-45];
        for (k, v) in specials.into_iter().enumerate() {
            if let Some(slot) = y.get_mut(k * 11) {
                *slot = v;
            }
        }
        let g = random_vec(&mut r, &[n]);
        let want: Vec<f32> = g
            .iter()
            .zip(&y)
            .map(|(&g, &y)| if y > 0.0 { g } else { 0.0 })
            .collect();
        for isa in Isa::available() {
            let mut dx = g.clone();
            let mask = elementwise::relu_mask_with(isa, &y);
            elementwise::relu_backward_in_place_with(isa, &mut dx, &mask);
            assert_eq!(dx, want, "length {n}, {isa:?}");
            // The same bits set piece by piece, in parallel, through a `MaskWriter`: pieces of
            // odd lengths, so that most start and end mid-word.
            let mut pieced = vec![0u64; mask.len()];
            let writer = elementwise::MaskWriter::new(&mut pieced);
            let starts: Vec<usize> = (0..n).step_by(45).collect();
            starts.par_iter().for_each(|&at| {
                let end = (at + 45).min(n);
                writer.at(0).set(isa, &y[at..end], at);
            });
            assert_eq!(pieced, mask, "mask set in pieces, length {n}, {isa:?}");
            // The same on a copy of any part, starting on a mask byte or between two.
            for (start, len) in [(0, n), (n / 3, n - n / 3), (n / 8 * 8, n % 8 + n / 2)] {
                let len = len.min(n - start);
                let mut out = vec![f32::NAN; len];
                let part = &g[start..start + len];
                elementwise::relu_backward_copy_with(isa, part, &mask, start, &mut out);
                assert_eq!(
                    out,
                    want[start..start + len],
                    "{start}+{len} of {n}, {isa:?}"
                );
            }
        }
    }
}

/// The parallel elementwise kernels: exact (each value as the serial loop computes it, in its
/// place), on the calling thread's short path and across chunk boundaries.
#[test]
fn elementwise_kernels_are_exact_across_chunks() {
    let mut r = rng(420);
    for n in [0, 1, 65_535, 65_536, (1 << 17) + 5] {
        let z = elementwise::zeroed(n);
        assert!(z.len() == n && z.iter().all(|&v| v == 0.0), "length {n}");
        let f = elementwise::filled(n, -2.5);
        assert!(f.len() == n && f.iter().all(|&v| v == -2.5), "length {n}");
        let (a, b) = (random_vec(&mut r, &[n]), random_vec(&mut r, &[n]));
        let mut sum = a.clone();
        elementwise::add_assign(&mut sum, &b);
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(sum, want, "length {n}");
        let squares: Vec<f32> = a.iter().map(|x| x * x).collect();
        assert_eq!(elementwise::map(&a, |x| x * x), squares, "map, length {n}");
        let scaled: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y * 2.0).collect();
        let got = elementwise::zip_map(&a, &b, |x, y| x * y * 2.0);
        assert_eq!(got, scaled, "zip_map, length {n}");
    }
}

#[test]
fn avg_pool_drops_the_odd_row_and_column() {
    let x: Vec<f32> = (0..15).map(|v| v as f32).collect(); // 3×5
    assert_eq!(pool::avg_pool2_forward(&x, 1, 3, 5), vec![3.0, 5.0]);
    let dx = pool::avg_pool2_backward(&[4.0, 8.0], 1, 3, 5);
    assert_eq!(dx.iter().sum::<f32>(), 12.0);
    assert!(dx[4] == 0.0 && dx[10..].iter().all(|&v| v == 0.0));
}

/// The parallel f64 sum of the `sum` and `mean` ops: over several pieces and a short last one,
/// the plain serial sum to rounding, and the same bits on 1 and 3 threads.
#[test]
fn sum_f64_in_pieces_is_the_serial_sum_on_any_thread_count() {
    let x = random_vec(&mut rng(303), &[3 * (1 << 16) + 77]);
    let serial: f64 = x.iter().map(|&v| v as f64).sum();
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| elementwise::sum_f64(&x))
    };
    let (one, three) = (on(1), on(3));
    assert_eq!(one.to_bits(), three.to_bits());
    let scale: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
    assert!((one - serial).abs() <= 1e-12 * scale, "{one} vs {serial}");
}

/// A forward and backward through conv, pool and Gram gives the same bits on 1, 2, 3 and 8
/// threads, and twice in a row: the parallel split depends on the shapes only.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut r = rng(500);
            let g = Graph::new();
            let x = g.param(random(&mut r, &[1, 3, 40, 33]));
            let w = g.param(random(&mut r, &[32, 3, 3, 3]));
            // The first layer runs by direct summation (3 input channels, like conv1_1); a second
            // layer wide enough for Winograd, its weights constant as a network's.
            let w2 = g.constant(std::sync::Arc::new(
                random(&mut r, &[40, 32, 3, 3]).mapv(|v| v * 0.1),
            ));
            let y = x.conv2d(w, None, 1).relu().max_pool2();
            let y = y.conv2d(w2, None, 1).relu();
            let loss = y.gram().square().sum() + y.square().mean();
            let value = loss.item();
            let grads = g.backward(loss);
            (
                value,
                grads.get(x).unwrap().clone(),
                grads.get(w).unwrap().clone(),
            )
        })
    };
    let one = run(1);
    // More threads than this machine's cores too: the split must not depend on the pool.
    for threads in [2, 3, 8] {
        let other = run(threads);
        assert_eq!(one.0.to_bits(), other.0.to_bits(), "{threads} threads");
        assert_eq!(one.1, other.1, "{threads} threads");
        assert_eq!(one.2, other.2, "{threads} threads");
    }
    assert_eq!(one.1, run(1).1);
}
