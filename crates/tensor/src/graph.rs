//! The tape: a growing list of nodes, each a value plus (if it needs a gradient) the op that made
//! it. Reverse mode walks the list backwards once from a scalar.
//!
//! A node *requires a gradient* if it is a parameter ([`Graph::param`]) or was computed from one.
//! Constants — network weights, style targets — never do, so an op whose inputs are all constant
//! is computed but not recorded, and a recorded op's backward skips the inputs that need nothing
//! (a convolution of the image with constant weights computes the input gradient only).

use crate::backward::{backward_op, Op};
use ndarray::ArrayD;
use std::cell::RefCell;
use std::sync::Arc;

/// One recorded value. `op` is `Some` exactly when the value requires a gradient and is not a
/// parameter itself.
struct Node {
    value: Arc<ArrayD<f32>>,
    requires_grad: bool,
    op: Option<Op>,
}

/// An autodiff tape. Build a computation from [`Var`]s made by [`Graph::param`] and
/// [`Graph::constant`], then call [`Graph::backward`] on its scalar result. A graph is cheap to
/// create; make a fresh one per evaluation.
#[derive(Default)]
pub struct Graph {
    nodes: RefCell<Vec<Node>>,
}

/// A handle to a value on a [`Graph`]. `Copy`, so expressions read naturally; the operations are
/// methods (see the `ops` module).
#[derive(Clone, Copy)]
pub struct Var<'g> {
    pub(crate) graph: &'g Graph,
    pub(crate) id: usize,
}

/// The gradients of one backward pass, keyed by the id of the [`Var`] they belong to. Only
/// parameters keep theirs; intermediate gradients are freed as soon as they are propagated.
pub struct Gradients {
    grads: Vec<Option<ArrayD<f32>>>,
}

impl Gradients {
    /// `∂loss/∂v`, or `None` if `v` is not a parameter (or the loss does not depend on it —
    /// then the gradient is zero, returned as `None` to say no work was done).
    pub fn get(&self, v: Var) -> Option<&ArrayD<f32>> {
        self.grads.get(v.id).and_then(|g| g.as_ref())
    }

    /// Takes `∂loss/∂v` out of the map (see [`Gradients::get`]).
    pub fn take(&mut self, v: Var) -> Option<ArrayD<f32>> {
        self.grads.get_mut(v.id).and_then(|g| g.take())
    }
}

impl Graph {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    /// A leaf whose gradient is wanted (the image, in style transfer).
    pub fn param(&self, value: ArrayD<f32>) -> Var<'_> {
        self.push_node(Arc::new(standard(value)), true, None)
    }

    /// A leaf that needs no gradient. Shared, not copied: network weights are passed as the same
    /// `Arc` to every evaluation's graph.
    pub fn constant(&self, value: Arc<ArrayD<f32>>) -> Var<'_> {
        let value = if value.is_standard_layout() {
            value
        } else {
            Arc::new(standard((*value).clone()))
        };
        self.push_node(value, false, None)
    }

    /// Records the result of an op. The op is kept only if one of its inputs requires a
    /// gradient; otherwise the result is a constant.
    pub(crate) fn record(&self, value: ArrayD<f32>, op: Op) -> Var<'_> {
        let nodes = self.nodes.borrow();
        let requires_grad = op.inputs().iter().any(|&i| nodes[i].requires_grad);
        drop(nodes);
        let value = Arc::new(standard(value));
        if requires_grad {
            self.push_node(value, true, Some(op))
        } else {
            self.push_node(value, false, None)
        }
    }

    fn push_node(&self, value: Arc<ArrayD<f32>>, requires_grad: bool, op: Option<Op>) -> Var<'_> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value,
            requires_grad,
            op,
        });
        Var {
            graph: self,
            id: nodes.len() - 1,
        }
    }

    pub(crate) fn value(&self, id: usize) -> Arc<ArrayD<f32>> {
        Arc::clone(&self.nodes.borrow()[id].value)
    }

    pub(crate) fn requires_grad(&self, id: usize) -> bool {
        self.nodes.borrow()[id].requires_grad
    }

    /// Reverse mode from a scalar `loss`: seeds `∂loss/∂loss = 1` and walks the tape backwards,
    /// sending each node's gradient through its op's derivative ([`backward_op`]) and summing
    /// what arrives at each input in place.
    ///
    /// # Panics
    /// If `loss` is not a single-element tensor or belongs to another graph.
    #[track_caller]
    pub fn backward(&self, loss: Var) -> Gradients {
        assert!(
            std::ptr::eq(loss.graph, self),
            "backward: the loss belongs to another graph"
        );
        let nodes = self.nodes.borrow();
        assert_eq!(
            nodes[loss.id].value.len(),
            1,
            "backward: the loss must be a scalar, got shape {:?}",
            nodes[loss.id].value.shape()
        );
        let mut grads: Vec<Option<ArrayD<f32>>> = vec![None; nodes.len()];
        if !nodes[loss.id].requires_grad {
            return Gradients { grads };
        }
        grads[loss.id] = Some(ArrayD::ones(nodes[loss.id].value.raw_dim()));
        for id in (0..=loss.id).rev() {
            let Some(op) = &nodes[id].op else { continue };
            let Some(grad) = grads[id].take() else {
                continue;
            };
            let value_of = |i: usize| &*nodes[i].value;
            let needs = |i: usize| nodes[i].requires_grad;
            for (input, g) in backward_op(op, &nodes[id].value, &grad, &value_of, &needs) {
                match &mut grads[input] {
                    Some(acc) => *acc += &g,
                    slot => *slot = Some(g),
                }
            }
        }
        Gradients { grads }
    }
}

/// The value in row-major ("C") layout: every kernel reads values as flat slices.
fn standard(a: ArrayD<f32>) -> ArrayD<f32> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

impl std::fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.graph.value(self.id);
        write!(f, "Var #{} {:?}", self.id, value.shape())
    }
}
