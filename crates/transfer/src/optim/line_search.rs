//! A line search for the strong Wolfe conditions (Nocedal & Wright, *Numerical Optimization*,
//! 2nd ed., Algorithms 3.5 and 3.6), with cubic interpolation — the one `torch.optim.LBFGS` and
//! SciPy use.
//!
//! Along the direction `d` from `x` (with `φ(t) = L(x + t·d)`), it looks for a step `t` with
//! - sufficient decrease: `φ(t) ≤ φ(0) + c1·t·φ'(0)`, and
//! - curvature: `|φ'(t)| ≤ c2·|φ'(0)|`,
//!
//! first growing `t` until a bracket around such a step is found, then shrinking the bracket
//! ("zoom") by cubic interpolation of the two ends' values and slopes.

use super::{axpy, dot, max_abs, Eval};

/// Sufficient-decrease constant.
const C1: f64 = 1e-4;
/// Curvature constant (0.9 is the usual value for quasi-Newton directions).
const C2: f64 = 0.9;
/// Bracket width (times `max|d|`) below which the zoom stops.
const TOLERANCE_CHANGE: f64 = 1e-9;

/// A trial point on the line: step, value, gradient, and directional derivative `∇L·d`.
#[derive(Clone)]
pub(crate) struct Trial {
    pub t: f64,
    pub f: f64,
    pub g: Vec<f32>,
    pub gtd: f64,
}

/// The result of a search: the best point found (the start itself, `t = 0`, if nothing was
/// better), the evaluations used, and whether the evaluation callback asked to stop.
pub(crate) struct SearchResult {
    pub best: Trial,
    pub stopped: bool,
}

/// Searches from `start` (at `t = 0`) along `d`, trying `t` first, with at most `max_evals`
/// evaluations.
pub(crate) fn strong_wolfe(
    f: &mut Eval,
    x: &[f32],
    d: &[f32],
    start: &Trial,
    t: f64,
    max_evals: usize,
) -> SearchResult {
    let d_norm = max_abs(d);
    let mut scratch = x.to_vec();
    let mut evals = 0;
    let mut eval_at = |t: f64| -> Option<Trial> {
        scratch.copy_from_slice(x);
        axpy(t, d, &mut scratch);
        let (fv, g) = f(&scratch)?;
        let gtd = dot(&g, d);
        Some(Trial {
            t,
            f: fv as f64,
            g,
            gtd,
        })
    };
    let stop = |best: Trial| SearchResult {
        best,
        stopped: true,
    };

    // Phase 1: bracketing.
    let mut prev = start.clone();
    let Some(mut cur) = eval_at(t) else {
        return stop(start.clone());
    };
    evals += 1;
    let mut bracket: [Trial; 2];
    loop {
        if !cur.f.is_finite()
            || cur.f > start.f + C1 * cur.t * start.gtd
            || (evals > 2 && cur.f >= prev.f)
        {
            bracket = [prev, cur];
            break;
        }
        if cur.gtd.abs() <= -C2 * start.gtd {
            return SearchResult {
                best: cur,
                stopped: false,
            };
        }
        if cur.gtd >= 0.0 {
            bracket = [prev, cur];
            break;
        }
        if evals >= max_evals {
            return SearchResult {
                best: cur,
                stopped: false,
            };
        }
        // Extrapolate: a cubic step between 1.01× and 10× the current one.
        let (lo, hi) = (cur.t + 0.01 * (cur.t - prev.t), cur.t * 10.0);
        let next_t = cubic_min(&prev, &cur, lo, hi);
        let Some(next) = eval_at(next_t) else {
            return stop(cur);
        };
        evals += 1;
        prev = std::mem::replace(&mut cur, next);
    }

    // Phase 2: zoom. `low` is the end with the lower value.
    let mut low = if bracket[0].f <= bracket[1].f { 0 } else { 1 };
    let mut insufficient_progress = false;
    while evals < max_evals {
        let (a, b) = (&bracket[0], &bracket[1]);
        if (b.t - a.t).abs() * d_norm < TOLERANCE_CHANGE {
            break;
        }
        let (tmin, tmax) = (a.t.min(b.t), a.t.max(b.t));
        let mut t = cubic_min(a, b, tmin, tmax);
        // Keep away from the ends: an interpolated step too close to one twice in a row is
        // moved a tenth of the bracket inside.
        let eps = 0.1 * (tmax - tmin);
        if (tmax - t).min(t - tmin) < eps {
            if insufficient_progress || t >= tmax || t <= tmin {
                t = if (t - tmax).abs() < (t - tmin).abs() {
                    tmax - eps
                } else {
                    tmin + eps
                };
                insufficient_progress = false;
            } else {
                insufficient_progress = true;
            }
        } else {
            insufficient_progress = false;
        }
        let Some(new) = eval_at(t) else {
            return stop(bracket[low].clone());
        };
        evals += 1;
        let high = 1 - low;
        if !new.f.is_finite() || new.f > start.f + C1 * new.t * start.gtd || new.f >= bracket[low].f
        {
            bracket[high] = new;
            low = if bracket[0].f <= bracket[1].f { 0 } else { 1 };
        } else {
            if new.gtd.abs() <= -C2 * start.gtd {
                return SearchResult {
                    best: new,
                    stopped: false,
                };
            }
            if new.gtd * (bracket[high].t - bracket[low].t) >= 0.0 {
                bracket[high] = bracket[low].clone();
            }
            bracket[low] = new;
        }
    }
    let [b0, b1] = bracket;
    let best = if low == 0 { b0 } else { b1 };
    SearchResult {
        best,
        stopped: false,
    }
}

/// The minimiser of the cubic through two points' values and slopes, clamped to `[lo, hi]`;
/// the midpoint when the cubic has no minimum there (or a value is not finite).
fn cubic_min(p: &Trial, q: &Trial, lo: f64, hi: f64) -> f64 {
    let d1 = p.gtd + q.gtd - 3.0 * (p.f - q.f) / (p.t - q.t);
    let d2_sq = d1 * d1 - p.gtd * q.gtd;
    if d2_sq >= 0.0 {
        let d2 = d2_sq.sqrt();
        let t = if p.t <= q.t {
            q.t - (q.t - p.t) * ((q.gtd + d2 - d1) / (q.gtd - p.gtd + 2.0 * d2))
        } else {
            p.t - (p.t - q.t) * ((p.gtd + d2 - d1) / (p.gtd - q.gtd + 2.0 * d2))
        };
        if t.is_finite() {
            return t.clamp(lo, hi);
        }
    }
    (lo + hi) / 2.0
}
