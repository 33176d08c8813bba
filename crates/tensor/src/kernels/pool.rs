//! 2×2, stride-2 pooling over `C×H×W` planes, with output `⌊H/2⌋×⌊W/2⌋` (an odd last row or
//! column is dropped, as PyTorch and TensorFlow do with no padding).
//!
//! Channels are independent, so each plane is a rayon task.

use super::elementwise;
use rayon::prelude::*;

/// Max pooling. Returns the pooled planes and, for each output, which input of its 2×2 window
/// won: `2·row + column` within the window (0–3; one byte, a quarter of a `u32` index). Ties go
/// to the first element in row-major window order — the gradient then flows to that one input
/// only, as in PyTorch.
pub fn max_pool2_forward(x: &[f32], c: usize, h: usize, w: usize) -> (Vec<f32>, Vec<u8>) {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = elementwise::zeroed(c * oh * ow);
    let mut arg = vec![0u8; c * oh * ow];
    if oh * ow == 0 {
        return (y, arg);
    }
    y.par_chunks_mut(oh * ow)
        .zip(arg.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(ch, (yp, ap))| {
            let plane = &x[ch * h * w..(ch + 1) * h * w];
            for ((top, bottom), (yr, ar)) in plane
                .chunks_exact(2 * w)
                .map(|rows| rows.split_at(w))
                .zip(yp.chunks_exact_mut(ow).zip(ap.chunks_exact_mut(ow)))
            {
                // The window's four values in row-major order, kept in registers: the winner is
                // chosen by selects, not by branches on the data (which mispredict half the time)
                // or by re-reading the input at the winner's index.
                for (((t, b), y), a) in top
                    .chunks_exact(2)
                    .zip(bottom.chunks_exact(2))
                    .zip(yr.iter_mut())
                    .zip(ar.iter_mut())
                {
                    let (mut best, mut k) = (t[0], 0u8);
                    for (v, idx) in [(t[1], 1u8), (b[0], 2), (b[1], 3)] {
                        // Strict `>`: the first maximum wins a tie. A NaN never wins, except
                        // that a NaN already in `best` stays (it compares false both ways).
                        let wins = v > best;
                        best = if wins { v } else { best };
                        k = if wins { idx } else { k };
                    }
                    *y = best;
                    *a = k;
                }
            }
        });
    (y, arg)
}

/// Max pooling backward: each output gradient goes to the input that won its window.
pub fn max_pool2_backward(dy: &[f32], arg: &[u8], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = elementwise::zeroed(c * h * w);
    if oh * ow == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(ch, plane)| {
            let range = ch * oh * ow..(ch + 1) * oh * ow;
            // Every input of a window is written once — the gradient or zero — row pair by
            // row pair (a dropped odd last row or column keeps its zero).
            for ((rows, g), k) in plane
                .chunks_exact_mut(2 * w)
                .zip(dy[range.clone()].chunks_exact(ow))
                .zip(arg[range].chunks_exact(ow))
            {
                let (top, bottom) = rows.split_at_mut(w);
                for (((t, b), &g), &k) in top
                    .chunks_exact_mut(2)
                    .zip(bottom.chunks_exact_mut(2))
                    .zip(g)
                    .zip(k)
                {
                    let to = |idx: u8| if k == idx { g } else { 0.0 };
                    t[0] = to(0);
                    t[1] = to(1);
                    b[0] = to(2);
                    b[1] = to(3);
                }
            }
        });
    dx
}

/// Average pooling: the mean of each 2×2 window.
pub fn avg_pool2_forward(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = elementwise::zeroed(c * oh * ow);
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
    let mut dx = elementwise::zeroed(c * h * w);
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
