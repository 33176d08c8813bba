//! One style-transfer run: minimise the objective over the image from an initial image, for a
//! budget of evaluations, reporting every evaluation to an observer.

use crate::optim::{Adam, GradientDescent, Lbfgs, LineSearch, Multiscale, Optimizer, Precondition};
use nst_loss::Objective;
use nst_tensor::ndarray::{ArrayD, Dimension};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Which optimizer, with its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// L-BFGS with `history` pairs.
    Lbfgs {
        /// History size.
        history: usize,
        /// Step-length strategy.
        line_search: LineSearch,
        /// The metric of the inverse-Hessian guess.
        precondition: Precondition,
    },
    /// Adam with learning rate `lr`.
    Adam {
        /// Learning rate.
        lr: f32,
    },
    /// Gradient descent with step `lr`.
    Gd {
        /// Step size.
        lr: f32,
    },
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptimizerKind::Lbfgs {
                history,
                line_search,
                precondition,
            } => {
                let steps = match line_search {
                    LineSearch::StrongWolfe => "strong-Wolfe line search",
                    LineSearch::None => "no line search",
                };
                let metric = match precondition {
                    Precondition::Multiscale => ", multiscale preconditioner",
                    Precondition::None => "",
                };
                write!(f, "L-BFGS (history {history}, {steps}{metric})")
            }
            OptimizerKind::Adam { lr } => write!(f, "Adam (lr {lr})"),
            OptimizerKind::Gd { lr } => write!(f, "gradient descent (lr {lr})"),
        }
    }
}

/// What one evaluation measured: the unweighted terms, the weighted total, and its wall time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalRecord {
    /// 1-based evaluation number.
    pub eval: usize,
    /// `L = α·L_c + β·L_s + γ·L_tv`.
    pub total: f32,
    /// `L_c`.
    pub content: f32,
    /// `L_s`.
    pub style: f32,
    /// `L_tv`.
    pub tv: f32,
    /// Wall milliseconds of this evaluation (forward and backward).
    pub ms: f64,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The final iterate — the output of a completed run.
    pub final_image: ArrayD<f32>,
    /// The evaluated image with the lowest total loss — the output of an interrupted run.
    pub best_image: ArrayD<f32>,
    /// The best image's record.
    pub best: Option<EvalRecord>,
    /// The last evaluation's record.
    pub last: Option<EvalRecord>,
    /// Evaluations made.
    pub evals: usize,
    /// Whether the run was stopped by the interrupt flag before its budget was spent.
    pub interrupted: bool,
    /// The evaluation whose loss or gradient was not finite (NaN or ±∞), which stopped the run:
    /// no step can be taken from it, and continuing would only spread the NaN.
    pub non_finite: Option<usize>,
}

/// What [`run`] calls after each evaluation with its record and the evaluated image; an error
/// stops the run.
pub type Observer<'a, E> = dyn FnMut(&EvalRecord, &ArrayD<f32>) -> Result<(), E> + 'a;

/// Minimises `objective` from `x0` for at most `budget` evaluations (line-search evaluations
/// included). After each evaluation, `observe(record, image)` is called (for logging, progress
/// and intermediate images); an error from it stops the run and is returned as it is (the
/// observer's own error type `E`). Setting `interrupt` stops the run, dropping the evaluation in
/// progress at its next layer or backward op (`Objective::evaluate_unless`), and keeps the best
/// image; so does an evaluation whose loss or gradient is not finite (see
/// [`RunOutcome::non_finite`]).
pub fn run<E>(
    objective: &Objective,
    x0: ArrayD<f32>,
    optimizer: OptimizerKind,
    budget: usize,
    observe: &mut Observer<'_, E>,
    interrupt: &AtomicBool,
) -> Result<RunOutcome, E> {
    let shape = x0.raw_dim();
    let mut x: Vec<f32> = x0.iter().copied().collect();
    let mut best: Option<(EvalRecord, ArrayD<f32>)> = None;
    let mut last = None;
    let mut evals = 0;
    let mut interrupted = false;
    let mut non_finite = None;
    let mut failure = None;
    {
        let mut eval = |xs: &[f32]| -> Option<(f32, Vec<f32>)> {
            if evals >= budget || failure.is_some() || non_finite.is_some() {
                return None;
            }
            let image = ArrayD::from_shape_vec(shape.clone(), xs.to_vec()).expect("image shape");
            let start = Instant::now();
            let Some(e) = objective.evaluate_unless(&image, &|| interrupt.load(Ordering::SeqCst))
            else {
                interrupted = true;
                return None;
            };
            evals += 1;
            let record = EvalRecord {
                eval: evals,
                total: e.total,
                content: e.content,
                style: e.style,
                tv: e.tv,
                ms: start.elapsed().as_secs_f64() * 1e3,
            };
            if let Err(msg) = observe(&record, &image) {
                failure = Some(msg);
                return None;
            }
            last = Some(record);
            if !e.is_finite() {
                non_finite = Some(evals);
                return None;
            }
            if best.as_ref().is_none_or(|(b, _)| e.total < b.total) {
                best = Some((record, image));
            }
            Some((e.total, e.grad.into_raw_vec_and_offset().0))
        };
        let mut opt: Box<dyn Optimizer> = match optimizer {
            OptimizerKind::Lbfgs {
                history,
                line_search,
                precondition,
            } => Box::new(Lbfgs {
                history,
                line_search,
                metric: match precondition {
                    // The image is 1 × planes × height × width; a vector of any other shape
                    // has no pyramid, and runs the classic method.
                    Precondition::Multiscale => match shape.slice() {
                        &[_, planes, height, width] => Some(Multiscale::new(planes, height, width)),
                        _ => None,
                    },
                    Precondition::None => None,
                },
            }),
            OptimizerKind::Adam { lr } => Box::new(Adam { lr }),
            OptimizerKind::Gd { lr } => Box::new(GradientDescent { lr }),
        };
        opt.minimize(&mut x, &mut eval);
    }
    if let Some(msg) = failure {
        return Err(msg);
    }
    interrupted |= interrupt.load(Ordering::SeqCst) && evals < budget;
    let final_image = ArrayD::from_shape_vec(shape, x).expect("image shape");
    let (best, best_image) = match best {
        Some((r, img)) => (Some(r), img),
        None => (None, final_image.clone()),
    };
    Ok(RunOutcome {
        final_image,
        best_image,
        best,
        last,
        evals,
        interrupted,
        non_finite,
    })
}
