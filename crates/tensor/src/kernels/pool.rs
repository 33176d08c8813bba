//! 2×2, stride-2 pooling over `C×H×W` planes, with output `⌊H/2⌋×⌊W/2⌋` (an odd last row or
//! column is dropped, as PyTorch and TensorFlow do with no padding).
//!
//! Channels are independent, so each plane is a rayon task.

use rayon::prelude::*;

/// Max pooling. Returns the pooled planes and, for each output, which input of its 2×2 window
/// won: `2·row + column` within the window (0–3; one byte, a quarter of a `u32` index). Ties go
/// to the first element in row-major window order — the gradient then flows to that one input
/// only, as in PyTorch.
pub fn max_pool2_forward(x: &[f32], c: usize, h: usize, w: usize) -> (Vec<f32>, Vec<u8>) {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0; c * oh * ow];
    let mut arg = vec![0u8; c * oh * ow];
    if oh * ow == 0 {
        return (y, arg);
    }
    y.par_chunks_mut(oh * ow)
        .zip(arg.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(ch, (yp, ap))| {
            let plane = &x[ch * h * w..(ch + 1) * h * w];
            for i in 0..oh {
                for j in 0..ow {
                    let corner = 2 * i * w + 2 * j;
                    let mut best = 0;
                    for k in 1..4 {
                        // Strict `>`: the first maximum wins a tie. A NaN never wins, except
                        // that a NaN already in `best` stays (it compares false both ways).
                        if plane[corner + window_offset(k, w)]
                            > plane[corner + window_offset(best, w)]
                        {
                            best = k;
                        }
                    }
                    yp[i * ow + j] = plane[corner + window_offset(best, w)];
                    ap[i * ow + j] = best as u8;
                }
            }
        });
    (y, arg)
}

/// Where the `k`-th element (0–3, row-major) of a 2×2 window lies from its top-left corner, in a
/// plane of width `w`.
fn window_offset(k: usize, w: usize) -> usize {
    (k >> 1) * w + (k & 1)
}

/// Max pooling backward: each output gradient goes to the input that won its window.
pub fn max_pool2_backward(dy: &[f32], arg: &[u8], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0.0; c * h * w];
    if oh * ow == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(ch, plane)| {
            let range = ch * oh * ow..(ch + 1) * oh * ow;
            for (o, (g, &k)) in dy[range.clone()].iter().zip(&arg[range]).enumerate() {
                let corner = 2 * (o / ow) * w + 2 * (o % ow);
                plane[corner + window_offset(k as usize, w)] += *g;
            }
        });
    dx
}

/// Average pooling: the mean of each 2×2 window.
pub fn avg_pool2_forward(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0; c * oh * ow];
    if oh * ow == 0 {
        return y;
    }
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(ch, yp)| {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for i in 0..oh {
            for j in 0..ow {
                let t = 2 * i * w + 2 * j;
                yp[i * ow + j] = 0.25 * (plane[t] + plane[t + 1] + plane[t + w] + plane[t + w + 1]);
            }
        }
    });
    y
}

/// Average pooling backward: a quarter of each output gradient to each input of its window
/// (nothing to a dropped odd row or column).
pub fn avg_pool2_backward(dy: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0.0; c * h * w];
    if oh * ow == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(ch, plane)| {
            let g = &dy[ch * oh * ow..(ch + 1) * oh * ow];
            for i in 0..oh {
                for j in 0..ow {
                    let q = 0.25 * g[i * ow + j];
                    let t = 2 * i * w + 2 * j;
                    for idx in [t, t + 1, t + w, t + w + 1] {
                        plane[idx] += q;
                    }
                }
            }
        });
    dx
}
