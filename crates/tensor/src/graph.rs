//! The tape: a growing list of nodes, each a value plus (if it needs a gradient) the op that made
//! it. Reverse mode walks the list backwards once from a scalar.
//!
//! A node *requires a gradient* if it is a parameter ([`Graph::param`]) or was computed from one.
//! Constants — network weights, style targets — never do, so an op whose inputs are all constant
//! is computed but not recorded, and a recorded op's backward skips the inputs that need nothing
//! (a convolution of the image with constant weights computes the input gradient only).
//!
//! **Memory.** A value is kept only while someone may read it. Each recorded op says which input
//! values its derivative reads ([`Op::reads`]: a Gram matrix reads its features, a ReLU or a
//! convolution with constant weights reads none — they keep a bit mask or nothing); a value no
//! derivative reads is freed when its owner calls [`Var::release`](crate::Var::release) (the
//! network does so for each activation once the next layer has consumed it). The backward pass
//! frees each derivative record once it has run, and each interior value as soon as no
//! derivative still to run reads it (a style layer's features go right after its Gram
//! matrix's derivative, at the start of the pass), so the tape shrinks while the gradients grow.
use crate::backward::{backward_op, Op};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::elementwise;
use ndarray::ArrayD;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One recorded value. `op` is `Some` exactly when the value requires a gradient and is not a
/// parameter itself.
struct Node {
    /// The forward value, `None` once released.
    value: Option<Arc<ArrayD<f32>>>,
    /// The value's shape, known after the value is released.
    shape: Vec<usize>,
    /// Whether the node was computed by an op (not a parameter or constant leaf).
    interior: bool,
    requires_grad: bool,
    /// How many recorded derivatives still to run read this value ([`Graph::release`] keeps
    /// it while any do; the backward pass frees it when the last one has run).
    readers: u32,
    op: Option<Op>,
    /// What a profile reports about the node (only filled in on a profiled graph).
    timing: Option<OpTiming>,
}

/// The time one node of a profiled graph cost ([`Graph::profiled`]).
#[derive(Clone, Debug)]
pub struct OpTiming {
    /// The name given with [`Var::label`] (a network layer, e.g. `conv1_2`), if any.
    pub label: Option<String>,
    /// The op's kind (`conv2d`, `relu`, `gram`, …; `leaf` for inputs and constants).
    pub op: &'static str,
    /// Wall time from the previous node's creation to this one's: the op's forward pass.
    pub forward: Duration,
    /// Wall time of the op's derivative in [`Graph::backward`] (zero if it had none).
    pub backward: Duration,
    /// For a convolution, its geometry (which says the algorithm and the work done).
    pub conv: Option<ConvGeometry>,
}

/// An autodiff tape. Build a computation from [`Var`]s made by [`Graph::param`] and
/// [`Graph::constant`], then call [`Graph::backward`] on its scalar result. A graph is cheap to
/// create; make a fresh one per evaluation.
#[derive(Default)]
pub struct Graph {
    nodes: RefCell<Vec<Node>>,
    /// On a profiled graph, when the last node was created.
    last_node_at: Cell<Option<Instant>>,
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

    /// An empty tape that times every op, forward and backward: read the times with
    /// [`Graph::profile`] after [`Graph::backward`]. The clock reads cost nanoseconds per op.
    pub fn profiled() -> Self {
        let g = Self::default();
        g.last_node_at.set(Some(Instant::now()));
        g
    }

    /// The time each node cost, in creation order (empty unless made by [`Graph::profiled`]).
    pub fn profile(&self) -> Vec<OpTiming> {
        self.nodes
            .borrow()
            .iter()
            .filter_map(|n| n.timing.clone())
            .collect()
    }

    /// Names the node of `v` in profiles (see [`Var::label`]).
    pub(crate) fn set_label(&self, id: usize, label: &str) {
        if let Some(t) = &mut self.nodes.borrow_mut()[id].timing {
            t.label = Some(label.to_string());
        }
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
        let mut nodes = self.nodes.borrow_mut();
        let requires_grad = op.inputs().iter().any(|&i| nodes[i].requires_grad);
        if requires_grad {
            for i in op.reads(&|i| nodes[i].requires_grad) {
                nodes[i].readers += 1;
            }
        }
        drop(nodes);
        let value = Arc::new(standard(value));
        if requires_grad {
            self.push_node(value, true, Some(op))
        } else {
            self.push_node(value, false, None)
        }
    }

    /// Frees the value of node `id` unless a recorded derivative reads it (see the module
    /// documentation); reading it afterwards panics.
    pub(crate) fn release(&self, id: usize) {
        let mut nodes = self.nodes.borrow_mut();
        if nodes[id].readers == 0 {
            nodes[id].value = None;
        }
    }

    fn push_node(&self, value: Arc<ArrayD<f32>>, requires_grad: bool, op: Option<Op>) -> Var<'_> {
        let timing = self.last_node_at.get().map(|then| {
            let now = Instant::now();
            self.last_node_at.set(Some(now));
            OpTiming {
                label: None,
                op: op.as_ref().map_or("leaf", Op::name),
                forward: now - then,
                backward: Duration::ZERO,
                conv: op.as_ref().and_then(Op::conv_geometry),
            }
        });
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            shape: value.shape().to_vec(),
            value: Some(value),
            requires_grad,
            readers: 0,
            interior: op.is_some(),
            op,
            timing,
        });
        Var {
            graph: self,
            id: nodes.len() - 1,
        }
    }

    /// The value of node `id`.
    ///
    /// # Panics
    /// If it was released ([`Graph::release`], or by [`Graph::backward`]).
    #[track_caller]
    pub(crate) fn value(&self, id: usize) -> Arc<ArrayD<f32>> {
        match &self.nodes.borrow()[id].value {
            Some(v) => Arc::clone(v),
            None => panic!("the value of Var #{id} was released (read values before releasing them or before the backward pass)"),
        }
    }

    /// The shape of node `id`'s value (known even after it is released).
    pub(crate) fn shape(&self, id: usize) -> Vec<usize> {
        self.nodes.borrow()[id].shape.clone()
    }

    pub(crate) fn requires_grad(&self, id: usize) -> bool {
        self.nodes.borrow()[id].requires_grad
    }

    /// Reverse mode from a scalar `loss`: seeds `∂loss/∂loss = 1` and walks the tape backwards,
    /// sending each node's gradient through its op's derivative (`backward_op`) and summing
    /// what arrives at each input in place.
    ///
    /// The pass consumes the tape: each node computed from a parameter (the loss included) has
    /// its value and derivative record freed once it has been passed through, so read what you
    /// need (the loss terms) before calling this. Leaves and constants stay readable.
    ///
    /// # Panics
    /// If `loss` is not a single-element tensor or belongs to another graph.
    #[track_caller]
    pub fn backward(&self, loss: Var) -> Gradients {
        self.backward_unless(loss, &|| false)
            .expect("a pass that is never stopped ends")
    }

    /// [`Graph::backward`], asking `stop` before each op's derivative and ending at the first
    /// yes with `None`, the tape half consumed (drop the graph). An evaluation of a large image
    /// takes tens of seconds; this is how a run told to stop (SIGTERM, with a scheduler's SIGKILL
    /// 30 s behind it) gets out of one within an op.
    ///
    /// # Panics
    /// As [`Graph::backward`].
    #[track_caller]
    pub fn backward_unless(&self, loss: Var, stop: &dyn Fn() -> bool) -> Option<Gradients> {
        assert!(
            std::ptr::eq(loss.graph, self),
            "backward: the loss belongs to another graph"
        );
        let mut nodes = self.nodes.borrow_mut();
        let loss_shape = nodes[loss.id].shape.clone();
        assert_eq!(
            loss_shape.iter().product::<usize>(),
            1,
            "backward: the loss must be a scalar, got shape {loss_shape:?}"
        );
        let mut grads: Vec<Option<ArrayD<f32>>> = vec![None; nodes.len()];
        if !nodes[loss.id].requires_grad {
            return Some(Gradients { grads });
        }
        grads[loss.id] = Some(ArrayD::ones(loss_shape));
        for id in (0..=loss.id).rev() {
            let Some(op) = nodes[id].op.take() else {
                continue;
            };
            // Every reader of this node comes after it and is done: free its value now.
            nodes[id].value = None;
            let reads = op.reads(&|i| nodes[i].requires_grad);
            let Some(grad) = grads[id].take() else {
                release_read_values(&mut nodes, &reads);
                continue;
            };
            if stop() {
                return None;
            }
            let start = Instant::now();
            let value_of = |i: usize| -> &ArrayD<f32> {
                nodes[i]
                    .value
                    .as_deref()
                    .expect("a value read by a derivative is never released")
            };
            let shape_of = |i: usize| -> &[usize] { &nodes[i].shape };
            let needs = |i: usize| nodes[i].requires_grad;
            for (input, g) in backward_op(&op, grad, &value_of, &shape_of, &needs, &mut grads) {
                match &mut grads[input] {
                    // Same shape and both contiguous (always, in practice): add in parallel.
                    Some(acc) => match (acc.shape() == g.shape(), acc.as_slice_mut(), g.as_slice())
                    {
                        (true, Some(a), Some(s)) => elementwise::add_assign(a, s),
                        _ => *acc += &g,
                    },
                    slot => *slot = Some(g),
                }
            }
            drop(op);
            release_read_values(&mut nodes, &reads);
            if let Some(t) = &mut nodes[id].timing {
                t.backward = start.elapsed();
            }
        }
        Some(Gradients { grads })
    }
}

/// After a derivative has run: one reader fewer for each value it read, and an interior value
/// (one computed from a parameter) with none left is freed.
fn release_read_values(nodes: &mut [Node], reads: &[usize]) {
    for &i in reads {
        let node = &mut nodes[i];
        node.readers -= 1;
        if node.readers == 0 && node.requires_grad && node.interior {
            node.value = None;
        }
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
        write!(f, "Var #{} {:?}", self.id, self.graph.shape(self.id))
    }
}
