//! Elementwise kernels large enough to be worth running in parallel (VGG's first ReLUs see 12.6
//! million elements). Chunks are fixed in size, so results never depend on the thread count.

use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 16;

/// `y = max(x, 0)`.
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v.max(0.0);
            }
        });
    y
}

/// `dx = g` where the ReLU's output `y > 0`, else 0.
pub fn relu_backward(g: &[f32], y: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0; g.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
        .for_each(|(dc, (gc, yc))| {
            for ((d, &gv), &yv) in dc.iter_mut().zip(gc).zip(yc) {
                *d = if yv > 0.0 { gv } else { 0.0 };
            }
        });
    dx
}
