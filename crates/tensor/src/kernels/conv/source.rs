//! The planes an input-gradient pass reads: the output gradient `dy` (`C×H×W`) as it is, or as
//! the backward of an op fused into the forward convolution would make it — the 2×2 max
//! pooling's (unpooled), or the ReLU's (masked) — made row by row as a kernel reads it, so that
//! map is never written, nor masked, in a pass of its own (conv1_2's unpooled map is 50 MB at
//! 512×384, mostly zeros; masking relu1_1's gradient was a 50 MB read and write).

use super::super::elementwise;
use super::super::isa::Isa;
use super::super::prefetch;

/// See the module documentation.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The planes themselves, `C×H×W`.
    Planes(&'a [f32]),
    /// Planes known by their 2×2 max pooling's gradient: `g` (`C×⌊H/2⌋×⌊W/2⌋`) at each window's
    /// winner (`argmax`, as `pool::max_pool2_forward` gives it), zero elsewhere — what
    /// `pool::max_pool2_backward` would write.
    Unpooled {
        /// The pooled gradient.
        g: &'a [f32],
        /// Each window's winner.
        argmax: &'a [u8],
    },
    /// Planes `g` (`C×H×W`) through a ReLU's backward: `g` where bit `first_bit + i` of `mask`
    /// (`elementwise::relu_mask`'s words) is set, zero elsewhere — what
    /// `elementwise::relu_backward_in_place` would leave.
    Masked {
        /// The gradient above the ReLU.
        g: &'a [f32],
        /// The ReLU's `y > 0` bits.
        mask: &'a [u64],
        /// The bit of `g[0]` (an image's offset in a batch's mask).
        first_bit: usize,
    },
}

impl Source<'_> {
    /// Whether the planes are `c×h×w`.
    pub(crate) fn fits(&self, c: usize, h: usize, w: usize) -> bool {
        match *self {
            Source::Planes(x) => x.len() == c * h * w,
            Source::Unpooled { g, argmax } => {
                let pooled = c * (h / 2) * (w / 2);
                g.len() == pooled && argmax.len() == pooled
            }
            Source::Masked { g, mask, first_bit } => {
                g.len() == c * h * w && (first_bit + g.len()).div_ceil(64) <= mask.len()
            }
        }
    }

    /// Row `y` of plane `c` (of `h×w` planes) into `out` (`w` values); a masked row by the
    /// `isa` build of [`elementwise::relu_backward_copy_with`].
    #[inline(always)]
    pub(crate) fn read_row(
        &self,
        isa: Isa,
        (h, w): (usize, usize),
        c: usize,
        y: usize,
        out: &mut [f32],
    ) {
        match *self {
            Source::Planes(x) => out.copy_from_slice(&x[(c * h + y) * w..][..w]),
            Source::Unpooled { g, argmax } => {
                let pooled = c * (h / 2) * (w / 2)..(c + 1) * (h / 2) * (w / 2);
                unpool_row(&g[pooled.clone()], &argmax[pooled], (h, w), y, out)
            }
            Source::Masked { g, mask, first_bit } => {
                let at = (c * h + y) * w;
                elementwise::relu_backward_copy_with(isa, &g[at..at + w], mask, first_bit + at, out)
            }
        }
    }

    /// Asks for what row `y` of plane `c` is made from to be brought into the cache (see
    /// [`prefetch::slice`]): the row itself, or the pooled gradient's row and its winners.
    #[inline(always)]
    pub(crate) fn prefetch_row(&self, (h, w): (usize, usize), c: usize, y: usize) {
        match *self {
            Source::Planes(x) | Source::Masked { g: x, .. } => {
                prefetch::slice(&x[(c * h + y) * w..][..w])
            }
            Source::Unpooled { g, argmax } if y < 2 * (h / 2) => {
                let pw = w / 2;
                let at = c * (h / 2) * pw + y / 2 * pw;
                prefetch::slice(&g[at..at + pw]);
                prefetch::slice(&argmax[at..at + pw]);
            }
            Source::Unpooled { .. } => {}
        }
    }
}

/// Row `y` of an `h×w` plane given as in [`Source::Unpooled`] by its pooled gradient `g` and
/// winners `argmax` (`⌊h/2⌋×⌊w/2⌋`), into `out` (`w` values): `g` at the winner of its window,
/// 0 at the window's three others and on a dropped odd last row or column.
#[inline(always)]
fn unpool_row(g: &[f32], argmax: &[u8], (h, w): (usize, usize), y: usize, out: &mut [f32]) {
    let pw = w / 2;
    if y >= 2 * (h / 2) {
        out.fill(0.0);
        return;
    }
    let (gr, ar) = (&g[y / 2 * pw..][..pw], &argmax[y / 2 * pw..][..pw]);
    // The window positions this row holds: 2·(y mod 2) and the one after.
    let first = 2 * (y % 2) as u8;
    for ((o, &v), &k) in out.chunks_exact_mut(2).zip(gr).zip(ar) {
        o[0] = if k == first { v } else { 0.0 };
        o[1] = if k == first + 1 { v } else { 0.0 };
    }
    if w % 2 == 1 {
        out[w - 1] = 0.0;
    }
}
