//! Criterion benchmarks of the hot kernels at the shapes VGG16 sees on a 512×384 image.
//!
//! Run with `cargo bench -p nst-tensor` (or `cargo bench` at the root). Throughput is reported
//! in FLOP/s ("elem/s" in criterion's words) where a FLOP count is meaningful: `2·M·K·N` for a
//! GEMM and for each conv pass.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use nst_tensor::kernels::conv::{self, direct, im2col, winograd, ConvGeometry, Filters};
use nst_tensor::kernels::conv::{Activation, Source};
use nst_tensor::kernels::elementwise::MaskWriter;
use nst_tensor::kernels::gemm::{gemm_with, Backend, MatMut, MatRef};
use nst_tensor::kernels::isa::Isa;
use nst_tensor::kernels::{gram, matmul, pool};
use rayon::prelude::*;
use std::time::Duration;

/// The convolutions of VGG16 that the profile singles out, at 512×384 input.
fn layers() -> Vec<(&'static str, ConvGeometry)> {
    let g = |c_in, h, w, c_out| ConvGeometry {
        c_in,
        h,
        w,
        c_out,
        kh: 3,
        kw: 3,
        pad: 1,
        transposed: false,
    };
    vec![
        ("conv1_1", g(3, 384, 512, 64)),
        ("conv1_2", g(64, 384, 512, 64)),
        ("conv2_2", g(128, 192, 256, 128)),
        ("conv3_2", g(256, 96, 128, 256)),
        ("conv4_2", g(512, 48, 64, 512)),
        ("conv5_1", g(512, 24, 32, 512)),
    ]
}

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn quick<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group
}

/// The GEMM alone, single-threaded, on each backend (`gemm.rs`), at each layer's im2col shape —
/// in the orientation the convolution uses (pixels as M: P×K·K×C_out) and the textbook one
/// (C_out×K·K×P).
fn bench_sgemm(c: &mut Criterion) {
    let mut group = quick(c, "sgemm_1thread");
    for (name, g) in layers() {
        let (m, k, n) = (g.out_h() * g.out_w(), g.k(), g.c_out);
        let (a, b) = (data(m * k), data(k * n));
        let mut out = vec![0.0; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for backend in Backend::ALL {
            let id = |orientation: &str| {
                BenchmarkId::new(format!("{orientation}/{}", backend.name()), name)
            };
            group.bench_function(id("pixels_x_k_x_cout"), |bench| {
                bench.iter(|| {
                    gemm_with(
                        backend,
                        1.0,
                        MatRef::row_major(&a, m, k),
                        MatRef::row_major(&b, k, n),
                        0.0,
                        MatMut::row_major(&mut out, m, n),
                    )
                })
            });
            group.bench_function(id("cout_x_k_x_pixels"), |bench| {
                bench.iter(|| {
                    gemm_with(
                        backend,
                        1.0,
                        MatRef::row_major(&b, k, n).t(),
                        MatRef::row_major(&a, m, k).t(),
                        0.0,
                        MatMut::row_major(&mut out, n, m),
                    )
                })
            });
        }
    }
    group.finish();
}

/// One Winograd band's products as the network runs them, single-threaded, on each backend: for
/// each of the 36 positions `e`, `U_e (C_out × C_in) · V_e (C_in × 64 tiles)` (the bands of the
/// deeper layers; 128 before the fifteenth session, BENCHMARKS.md) — 36 *different*
/// filter matrices, so that from conv3 on they arrive from memory rather than from cache, as in
/// an evaluation — once as the forward pass multiplies, once with each `U_e` read transposed as
/// the input gradient does. (A benchmark that reuses one `U_e` measures a product the network
/// never runs: everything in cache.)
fn bench_winograd_gemm(c: &mut Criterion) {
    const E: usize = 36;
    let mut group = quick(c, "winograd_band_gemm_1thread");
    let n = 64;
    for (name, g) in layers().into_iter().skip(1) {
        let (m, k) = (g.c_out, g.c_in);
        let (u, v) = (data(E * m * k), data(E * k * n));
        let mut out = vec![0.0; E * m * n];
        group.throughput(Throughput::Elements((E * 2 * m * k * n) as u64));
        for backend in Backend::ALL {
            let id = |pass: &str| BenchmarkId::new(format!("{pass}/{}", backend.name()), name);
            for (pass, transposed) in [("forward", false), ("input_gradient", true)] {
                group.bench_function(id(pass), |bench| {
                    bench.iter(|| {
                        let products = u
                            .chunks_exact(m * k)
                            .zip(v.chunks_exact(k * n))
                            .zip(out.chunks_exact_mut(m * n));
                        for ((ue, ve), me) in products {
                            let ue = if transposed {
                                MatRef::row_major(ue, k, m).t()
                            } else {
                                MatRef::row_major(ue, m, k)
                            };
                            gemm_with(
                                backend,
                                1.0,
                                ue,
                                MatRef::row_major(ve, k, n),
                                0.0,
                                MatMut::row_major(me, m, n),
                            );
                        }
                    })
                });
            }
        }
    }
    group.finish();
}

fn bench_im2col_col2im(c: &mut Criterion) {
    let mut group = quick(c, "im2col_col2im");
    for (name, g) in layers() {
        let x = data(g.c_in * g.h * g.w);
        let bands = im2col::bands(&g);
        group.throughput(Throughput::Bytes(
            (4 * g.k() * g.out_h() * g.out_w()) as u64,
        ));
        group.bench_function(BenchmarkId::new("im2col", name), |bench| {
            bench.iter(|| {
                bands.par_iter().for_each(|&(y0, y1)| {
                    let mut col = vec![0.0; g.k() * (y1 - y0) * g.out_w()];
                    im2col::im2col_band(&x, &g, y0, y1, &mut col);
                    std::hint::black_box(&col);
                })
            })
        });
        let dcol = data(g.k() * bands[0].1 * g.out_w());
        group.bench_function(BenchmarkId::new("col2im", name), |bench| {
            bench.iter(|| {
                bands.par_iter().for_each(|&(y0, y1)| {
                    let n = g.k() * (y1 - y0) * g.out_w();
                    let mut dx = vec![0.0; g.c_in * (y1 - y0 + 2) * g.w];
                    im2col::col2im_band(&dcol[..n], &g, y0, y1, &mut dx);
                    std::hint::black_box(&dx);
                })
            })
        });
    }
    group.finish();
}

fn bench_conv(c: &mut Criterion) {
    let mut group = quick(c, "conv2d");
    for (name, g) in layers() {
        let (x, w, b) = (
            data(g.c_in * g.h * g.w),
            data(g.c_out * g.k()),
            data(g.c_out),
        );
        let dy = data(g.c_out * g.out_h() * g.out_w());
        group.throughput(Throughput::Elements(g.flops() as u64));
        // As in a run: filters prepared once (their transforms are cached), then each pass by
        // the algorithm the dispatcher picks.
        let f = Filters::new(&w, &g);
        let _ = f.winograd();
        group.bench_function(BenchmarkId::new("forward", name), |bench| {
            bench.iter(|| conv::conv2d_forward(&x, &f, Some(&b), Activation::None, &g))
        });
        // As a run calls it for a layer followed by a ReLU: fused, its mask set as rows are
        // stored.
        let mut words = vec![0u64; (g.c_out * g.out_h() * g.out_w()).div_ceil(64)];
        group.bench_function(BenchmarkId::new("forward_relu_masked", name), |bench| {
            bench.iter(|| {
                words.fill(0);
                let writer = MaskWriter::new(&mut words);
                let act = Activation::ReluMasked(writer.at(0));
                conv::conv2d_forward(&x, &f, Some(&b), act, &g)
            })
        });
        group.bench_function(BenchmarkId::new("input_grad", name), |bench| {
            bench.iter(|| conv::conv2d_backward_input(Source::Planes(&dy), &f, &g))
        });
        // Each algorithm on its own, for choosing between them.
        group.bench_function(BenchmarkId::new("forward_im2col", name), |bench| {
            bench.iter(|| im2col::forward(&x, &w, Some(&b), false, &g))
        });
        if g.c_in >= conv::WINOGRAD_MIN_IN_CHANNELS {
            group.bench_function(BenchmarkId::new("forward_winograd4x4", name), |bench| {
                bench.iter(|| winograd::forward(&x, f.winograd(), Some(&b), Activation::None, &g))
            });
        }
        if g.c_in <= conv::DIRECT_MAX_CHANNELS {
            group.bench_function(BenchmarkId::new("forward_direct", name), |bench| {
                bench.iter(|| {
                    direct::forward(Source::Planes(&x), &w, Some(&b), Activation::None, &g)
                })
            });
            // The input gradient the other way: GEMM + col2im.
            group.bench_function(BenchmarkId::new("input_grad_col2im", name), |bench| {
                bench.iter(|| im2col::backward_input(&dy, &w, &g))
            });
        }
    }
    group.finish();
}

fn bench_pool_and_gram(c: &mut Criterion) {
    let mut group = quick(c, "pool_gram");
    let (ch, h, w) = (64, 384, 512);
    let x = data(ch * h * w);
    let (y, arg) = pool::max_pool2_forward(&x, ch, h, w);
    group.throughput(Throughput::Bytes((4 * ch * h * w) as u64));
    group.bench_function("max_pool_forward/64x384x512", |bench| {
        bench.iter(|| pool::max_pool2_forward(&x, ch, h, w))
    });
    group.bench_function("max_pool_backward/64x384x512", |bench| {
        bench.iter(|| pool::max_pool2_backward(&y, &arg, ch, h, w))
    });
    let style_layers = [
        ("relu1_1", 64, 384 * 512),
        ("relu2_1", 128, 192 * 256),
        ("relu3_1", 256, 96 * 128),
        ("relu4_1", 512, 48 * 64),
        ("relu5_1", 512, 24 * 32),
    ];
    for (name, c_, m) in style_layers {
        let f = data(c_ * m);
        let s = data(c_ * c_);
        group.throughput(Throughput::Elements((2 * c_ * c_ * m) as u64));
        // Each build of the Gram kernel this processor runs (`kernels/gram.rs`).
        for isa in Isa::available() {
            let id = format!("{name}/{}", isa.name());
            group.bench_function(BenchmarkId::new("gram_forward", id), |bench| {
                bench.iter(|| gram::gram_with(isa, &f, c_, m))
            });
        }
        // The backward's product: dF = S·F with S = dG + dGᵀ (`backward.rs`, `Op::Gram`).
        group.bench_function(BenchmarkId::new("gram_backward", name), |bench| {
            bench.iter(|| {
                matmul::matmul(MatRef::row_major(&s, c_, c_), MatRef::row_major(&f, c_, m))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_sgemm,
    bench_winograd_gemm,
    bench_im2col_col2im,
    bench_conv,
    bench_pool_and_gram
);
/// `criterion_main!`, with the allocator set up as the CLI sets it: without it, every output over
/// 32 MB (conv1_x maps at 512×384) would be a fresh `mmap`, and the figures would be mostly page
/// faults that a real run never pays.
fn main() {
    // SAFETY: the first thing `main` does; no other thread exists yet.
    unsafe { nst_tensor::keep_freed_memory() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
