//! Limited-memory BFGS (Nocedal, 1980; Liu & Nocedal, 1989).
//!
//! The direction is `d = −H·g`, where `H` approximates the inverse Hessian from the last `m`
//! steps `s_k = x_{k+1} − x_k` and gradient changes `y_k = g_{k+1} − g_k`, applied by the
//! *two-loop recursion* without ever forming `H`. The recursion starts from `H₀ = γ·M`, with
//! `γ = sᵀy / yᵀMy` of the newest pair and `M` the identity (the classic method) or the image
//! pyramid's metric ([`Multiscale`], a preconditioner); the first direction, and each after a
//! restart, is `−M·g`, its first trial step `min(1, 1/‖g‖₁)` in the classic method and, with the
//! metric, the one that moves no pixel by more than `FIRST_STEP`. The pairs are stored in half
//! precision, which halves the bytes each step reads ([`HalfVector`]: everything after the
//! rounding, `ρ` and `γ` included, uses the rounded pair, so `H` is the exact L-BFGS update of
//! the pairs as stored). A pair is kept only if `yᵀs > 1e-10` (positive curvature), so `H` stays
//! positive definite and `d` a descent direction.
//!
//! The step along `d` is chosen by the strong-Wolfe line search by default. With
//! [`LineSearch::None`] it is the classic fixed step of Lua `optim.lbfgs` and
//! `torch.optim.LBFGS` without line search — `t = 1`, except `min(1, 1/‖g‖₁)` for the first
//! step — made safe: a step that raises the loss (or makes it non-finite) is undone, the memory
//! cleared, and the next step is again a scaled gradient step of half the length.

use super::half_vector::HalfVector;
use super::line_search::{strong_wolfe, Trial};
use super::multiscale::Multiscale;
use super::{axpy, dot, max_abs, Eval, Optimizer};
use std::collections::VecDeque;

/// How L-BFGS picks the step length along its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSearch {
    /// Strong-Wolfe line search (the default).
    StrongWolfe,
    /// A fixed unit step, as the classic implementations run it (with the safeguards above).
    None,
}

/// L-BFGS with history size `history` (see the module documentation).
pub struct Lbfgs {
    /// How many `(s, y)` pairs to keep (the classic default is 100).
    pub history: usize,
    /// How to choose the step.
    pub line_search: LineSearch,
    /// The metric `M` of `H₀ = γ·M` (`None`: the identity, as the classic implementations).
    pub metric: Option<Multiscale>,
}

/// With a metric, the first step after a (re)start moves the pixel that moves most by this much
/// (of the [0, 1] range). The classic `1/‖g‖₁` depends on the loss weights and the image size:
/// at 512 px with the default weights it is about 1e-9, four orders of magnitude short, and the
/// line search spends about four evaluations growing it tenfold at a time; ½ is accepted at
/// once there (BENCHMARKS.md).
const FIRST_STEP: f64 = 0.5;

/// Most line-search evaluations per iteration.
const MAX_LINE_SEARCH_EVALS: usize = 25;

/// One curvature pair, stored in half precision, with `ρ = 1 / yᵀs` of the stored values.
struct Pair {
    s: HalfVector,
    y: HalfVector,
    rho: f64,
}

/// `−H·g` by the two-loop recursion, with `H₀ = h0·M` (`M = I` without a metric):
///
/// ```text
/// q ← −g;  for i newest → oldest:  αᵢ = ρᵢ sᵢᵀq,  q ← q − αᵢ yᵢ
/// q ← h0·M·q; for i oldest → newest:  βᵢ = ρᵢ yᵢᵀq,  q ← q + (αᵢ − βᵢ) sᵢ
/// ```
///
/// Each update is made in one pass with the next pair's dot product
/// ([`HalfVector::add_to_then_dot`]): the history (up to 100 pairs of image-sized vectors) is
/// read once per loop, and reading it is what a step costs.
fn direction(g: &[f32], memory: &VecDeque<Pair>, h0: f64, metric: Option<&Multiscale>) -> Vec<f32> {
    let mut q: Vec<f32> = g.iter().map(|v| -v).collect();
    let n = memory.len();
    let mut alpha = vec![0.0; n];
    if n == 0 {
        return q;
    }
    let mut next = memory[n - 1].rho * memory[n - 1].s.dot(&q);
    for i in (0..n).rev() {
        alpha[i] = next;
        let p = &memory[i];
        match i.checked_sub(1) {
            Some(older) => {
                let o = &memory[older];
                next = o.rho * p.y.add_to_then_dot(-alpha[i], &mut q, &o.s);
            }
            None => p.y.add_to(-alpha[i], &mut q),
        }
    }
    if let Some(m) = metric {
        q = m.apply(&q);
    }
    q.iter_mut().for_each(|v| *v = (*v as f64 * h0) as f32);
    let mut beta = memory[0].rho * memory[0].y.dot(&q);
    for (i, p) in memory.iter().enumerate() {
        match memory.get(i + 1) {
            Some(newer) => {
                beta = newer.rho * p.s.add_to_then_dot(alpha[i] - beta, &mut q, &newer.y);
            }
            None => p.s.add_to(alpha[i] - beta, &mut q),
        }
    }
    q
}

impl Lbfgs {
    /// `−M·g`: the direction of steepest descent in the metric.
    fn steepest(&self, g: &[f32]) -> Vec<f32> {
        let mut d = match &self.metric {
            Some(m) => m.apply(g),
            None => g.to_vec(),
        };
        d.iter_mut().for_each(|v| *v = -*v);
        d
    }
}

impl Optimizer for Lbfgs {
    fn minimize(&mut self, x: &mut [f32], f: &mut Eval) {
        let Some((f0, g0)) = f(x) else { return };
        let mut cur = Trial {
            t: 0.0,
            f: f0 as f64,
            g: g0,
            gtd: 0.0,
        };
        // Grown as pairs arrive: a long history is never reserved up front.
        let mut memory: VecDeque<Pair> = VecDeque::new();
        let mut h0 = 1.0;
        // Scale of the next scaled-gradient (restart) step; halved after each rejected step.
        let mut restart_scale = 1.0;
        let mut restart = true;
        loop {
            let g_l1: f64 = cur.g.iter().map(|v| v.abs() as f64).sum();
            if g_l1 == 0.0 || !g_l1.is_finite() {
                return; // a stationary point (or nothing sensible to do)
            }
            let mut d = if restart || memory.is_empty() {
                self.steepest(&cur.g)
            } else {
                direction(&cur.g, &memory, h0, self.metric.as_ref())
            };
            let mut gtd = dot(&cur.g, &d);
            if gtd.is_nan() || gtd >= 0.0 {
                // Not a descent direction (only from rounding): forget and go downhill.
                memory.clear();
                d = self.steepest(&cur.g);
                gtd = dot(&cur.g, &d);
                restart = true;
            }
            // The first step after a (re)start, which has no pair to scale it: by 1/‖g‖₁ in the
            // classic code; with a metric, in the image's own units (see FIRST_STEP).
            let t = if !restart {
                1.0
            } else if self.metric.is_some() {
                restart_scale * FIRST_STEP / max_abs(&d)
            } else {
                restart_scale * (1.0 / g_l1).min(1.0)
            };
            cur.gtd = gtd;
            let x_old = x.to_vec();
            let next = match self.line_search {
                LineSearch::StrongWolfe => {
                    let r = strong_wolfe(f, x, &d, &cur, t, MAX_LINE_SEARCH_EVALS);
                    if r.best.t == 0.0 && r.stopped {
                        return;
                    }
                    axpy(r.best.t, &d, x);
                    if r.stopped {
                        return;
                    }
                    r.best
                }
                LineSearch::None => {
                    axpy(t, &d, x);
                    let Some((fv, g)) = f(x) else { return };
                    let trial = Trial {
                        t,
                        f: fv as f64,
                        g,
                        gtd: 0.0,
                    };
                    if trial.f.is_nan() || trial.f > cur.f {
                        // The step made things worse: undo it and restart smaller.
                        x.copy_from_slice(&x_old);
                        memory.clear();
                        restart = true;
                        restart_scale *= 0.5;
                        continue;
                    }
                    trial
                }
            };
            if next.t == 0.0 {
                // The line search found nothing better than where it started: restart from
                // the gradient, or stop if that was already a restart.
                if restart && memory.is_empty() {
                    return;
                }
                memory.clear();
                restart = true;
                continue;
            }
            // Curvature pair from this step, as it will be stored; its curvature `yᵀs` and the
            // scale `γ = yᵀs / yᵀMy` are those of the stored values.
            let s: Vec<f32> = x.iter().zip(&x_old).map(|(a, b)| a - b).collect();
            let y: Vec<f32> = next.g.iter().zip(&cur.g).map(|(a, b)| a - b).collect();
            let stored = HalfVector::round(&s).zip(HalfVector::round(&y));
            drop((s, y));
            let curvature = stored.and_then(|(s, y)| {
                let y_values = y.widen();
                let ys = s.dot(&y_values);
                (ys > 1e-10).then_some((s, y, y_values, ys))
            });
            if let Some((s, y, y_values, ys)) = curvature {
                if memory.len() == self.history {
                    memory.pop_front();
                }
                h0 = ys
                    / match &self.metric {
                        Some(m) => m.quadratic(&y_values),
                        None => dot(&y_values, &y_values),
                    };
                memory.push_back(Pair {
                    s,
                    y,
                    rho: 1.0 / ys,
                });
                restart = false;
            } else if self.line_search == LineSearch::None {
                // Rejected pair: without a line search the old memory is not to be trusted;
                // fall back to a scaled gradient step.
                memory.clear();
                restart = true;
            }
            cur = Trial { t: 0.0, ..next };
        }
    }
}
