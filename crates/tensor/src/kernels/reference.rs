//! Naive reference twins of the fast kernels: the definitions written as plain loops, used only
//! by tests (and kept obviously correct rather than fast).

use super::conv::ConvGeometry;

/// Direct convolution of one image, straight from the definition
/// `y[o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v] · x[c, i+u−p, j+v−p]`, accumulated in f64.
pub fn conv2d_direct(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut y = vec![0.0; g.c_out * oh * ow];
    for o in 0..g.c_out {
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                for c in 0..g.c_in {
                    for u in 0..g.kh {
                        for v in 0..g.kw {
                            let iy = (i + u) as isize - g.pad as isize;
                            let ix = (j + v) as isize - g.pad as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            let xv = x[(c * g.h + iy as usize) * g.w + ix as usize];
                            let wv = w[((o * g.c_in + c) * g.kh + u) * g.kw + v];
                            acc += xv as f64 * wv as f64;
                        }
                    }
                }
                y[(o * oh + i) * ow + j] = acc as f32;
            }
        }
    }
    y
}

/// `A·B` for row-major `A: m×k`, `B: k×n`, by the triple loop, accumulated in f64.
pub fn matmul_naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let acc: f64 = (0..k)
                .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                .sum();
            c[i * n + j] = acc as f32;
        }
    }
    c
}

/// 2×2 stride-2 max pooling (floor) by direct comparison; ties to the first in window order.
pub fn max_pool2_naive(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                let at = |di: usize, dj: usize| x[(ch * h + 2 * i + di) * w + 2 * j + dj];
                y.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    y
}
