//! Prepared convolution filters, kept for as long as their weight tensor lives.
//!
//! A network's weights are constants shared (as the same `Arc`) by every evaluation's graph, and
//! the forms the convolution algorithms consume — the Winograd-domain filters, the flipped
//! filters of the input gradient — depend on the weights alone. So the first convolution with a
//! constant weight tensor builds its [`Filters`], and later ones with the same tensor reuse it:
//! the transforms are paid once per run instead of twice per layer per evaluation.
//!
//! The prepared [`Filters`] share the weight tensor (one strong `Arc`); the cache's key is weak.
//! When every other `Arc` of a weight tensor is gone, its entry is dropped (on the next lookup),
//! and with it the last reference. A tensor that is still referenced cannot change
//! (`Arc::get_mut` refuses while another `Arc` or a `Weak` exists), so an entry can never go
//! stale.

use crate::kernels::conv::{ConvGeometry, Filters};
use ndarray::ArrayD;
use std::sync::{Arc, Mutex, Weak};

type Entry = (Weak<ArrayD<f32>>, Arc<Filters>);

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The prepared filters of the constant weight tensor `w` (`C_out×C_in×k_h×k_w`), built on
/// first use for geometry `g`.
pub(crate) fn filters_of(w: &Arc<ArrayD<f32>>, g: &ConvGeometry) -> Arc<Filters> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // One strong count is the entry's own Filters: only that one left means nobody else can
    // ever look this tensor up again.
    cache.retain(|(weak, _)| weak.strong_count() > 1);
    if let Some((_, f)) = cache
        .iter()
        .find(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(w)))
    {
        return Arc::clone(f);
    }
    let f = Arc::new(Filters::shared(Arc::clone(w), g));
    cache.push((Arc::downgrade(w), Arc::clone(&f)));
    f
}
