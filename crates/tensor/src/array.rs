//! Small helpers between `ndarray` values and the kernels' flat slices, used by the forward ops
//! and the derivatives alike (so neither imports the other).

use crate::kernels::conv::ConvGeometry;
use crate::kernels::elementwise;
use ndarray::{ArrayD, IxDyn};

/// The flat row-major data of a value (every stored value is in standard layout).
pub(crate) fn flat(a: &ArrayD<f32>) -> &[f32] {
    a.as_slice().expect("values are stored in standard layout")
}

/// [`flat`], mutable.
pub(crate) fn flat_mut(a: &mut ArrayD<f32>) -> &mut [f32] {
    a.as_slice_mut()
        .expect("values are stored in standard layout")
}

/// Per-image results joined into one batch, without a copy when there is one image (the
/// style-transfer case, where a copy would briefly double the largest maps).
pub(crate) fn join_images(mut parts: impl Iterator<Item = Vec<f32>>) -> Vec<f32> {
    let mut all = parts.next().unwrap_or_default();
    parts.for_each(|p| all.extend(p));
    all
}

/// `f` applied to every value of `a`, as an array of its shape ([`elementwise::map`]: on all
/// threads for large values).
pub(crate) fn map_values(a: &ArrayD<f32>, f: impl Fn(f32) -> f32 + Sync) -> ArrayD<f32> {
    from_vec(a.shape(), elementwise::map(flat(a), f))
}

/// `f` applied to each pair of values of `a` and `b` (same shapes), as an array of `a`'s shape
/// ([`elementwise::zip_map`]).
pub(crate) fn zip_values(
    a: &ArrayD<f32>,
    b: &ArrayD<f32>,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> ArrayD<f32> {
    from_vec(a.shape(), elementwise::zip_map(flat(a), flat(b), f))
}

/// A row-major array of `shape` holding `data`.
pub(crate) fn from_vec(shape: &[usize], data: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("kernel output matches its shape")
}

/// The geometry of a convolution of `x: N×C_in×H×W` with `w: C_out×C_in×k_h×k_w`.
pub(crate) fn conv_geometry(x: &ArrayD<f32>, w: &ArrayD<f32>, pad: usize) -> ConvGeometry {
    let (xs, ws) = (x.shape(), w.shape());
    ConvGeometry {
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        pad,
        transposed: false,
    }
}
