"""Reverse-mode automatic differentiation: the Tensor, the Function base class, ``no_grad``.

An op is a ``Function`` subclass with ``forward`` and ``backward`` side by side (see ``ops.py``,
which also gives ``Tensor`` its operators).
``Function.apply`` runs the forward on raw arrays and, when a gradient is wanted, records the
op on its output; ``Tensor.backward`` walks the recorded graph in reverse topological order.
"""

import contextlib

from minikd.engine import backend

_grad_enabled = [True]


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded: outputs never require grad (use for evaluation)."""
    previous = _grad_enabled[0]
    _grad_enabled[0] = False
    try:
        yield
    finally:
        _grad_enabled[0] = previous


def is_grad_enabled():
    """False inside ``no_grad()``."""
    return _grad_enabled[0]


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting.

    If ``y = broadcast(x)`` then ``dL/dx`` is ``dL/dy`` summed over every broadcast axis.
    """
    xp = backend.xp()
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = xp.sum(grad, axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = xp.sum(grad, axis=axes, keepdims=True)
    return grad


class Tensor:
    """An array of the active backend, with an optional gradient and the op that made it.

    ``requires_grad=True`` marks a leaf whose gradient ``backward`` accumulates into ``.grad``.
    Only float tensors can require grad.
    """

    __array_priority__ = 100  # make ndarray (op) Tensor defer to Tensor's reflected operators

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        self.data = backend.asarray(data)
        if requires_grad and not backend.is_float_dtype(self.data.dtype):
            raise TypeError(f"only float tensors can require grad, got dtype {backend.dtype_name(self.data.dtype)}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator = None  # the Function that produced this tensor, when recorded

    # ---- array-like views --------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return self.data.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({backend.to_numpy(self.data)!r}{grad})"

    def numpy(self):
        """The data as a NumPy array (copied from the GPU under CuPy)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return float(backend.xp().reshape(self.data, ()))  # a synchronisation: waits for the device

    def detach(self):
        """A new tensor sharing the data, cut from the graph (no gradient flows through it)."""
        return Tensor(self.data)

    def zero_grad(self):
        """Forget the accumulated gradient."""
        self.grad = None

    # ---- backward ----------------------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate ``d(self)/d(leaf)`` (times ``grad``) into ``.grad`` of every leaf that requires grad.

        ``grad`` is the upstream gradient (the cotangent), with this tensor's shape; it may be
        omitted only for a one-element tensor, where it is 1. The graph is kept, so calling
        ``backward`` twice adds the gradients twice, exactly as two losses would: call
        ``zero_grad`` (or the optimizer's) between steps.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (was it made under no_grad?)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward() without grad needs a one-element tensor, got shape {self.shape}")
            grad = backend.xp().ones_like(self.data)
        else:
            grad = backend.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape}, expected the tensor's shape {self.shape}")
        grads = {id(self): grad}
        handed_out = {id(grad)}  # arrays a leaf may not keep as they are: they live elsewhere too
        for node in _reverse_topological_order(self):
            g = grads.pop(id(node), None)
            if g is None:  # every op on the path returned no gradient for this node
                continue
            if node.creator is None:  # a leaf: accumulate into its own array, never another's
                node.grad = node.grad + g if node.grad is not None else _own_copy(g, handed_out)
                handed_out.add(id(node.grad))
                continue
            for parent, pg in zip(node.creator.parents, node.creator.backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                pg = unbroadcast(pg, parent.shape)
                grads[id(parent)] = grads[id(parent)] + pg if id(parent) in grads else pg

    # The operators (x + y, x @ w, x.sum(), ...) are attached by ops.py, beside the ops they call.


def _reverse_topological_order(root):
    """Nodes that need a gradient, each after every node that uses it (iterative DFS, no recursion limit)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if node.creator is not None:
            stack.extend((p, False) for p in node.creator.parents if p.requires_grad and id(p) not in seen)
    return reversed(order)


def _own_copy(grad, handed_out):
    """A leaf's first gradient as an array nobody else holds (optimizers update ``.grad`` in place).

    Plain path: a copy. Fast path (NumPy only): keep ``grad`` itself when it is a fresh array (not
    a view, not handed to another leaf or to ``backward``), which saves one copy per parameter.
    """
    if backend.on_host() and id(grad) not in handed_out and grad.base is None:
        return grad
    return backend.xp().asarray(grad, copy=True)


def as_tensor(x, like=None):
    """``x`` as a Tensor; a Python number takes the dtype of ``like`` so float32 stays float32."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float)):
        return Tensor(backend.asarray(x, dtype=like.dtype))
    return Tensor(x)


def data_of(x):
    """The raw array of a Tensor, or ``x`` itself converted to the active backend."""
    return x.data if isinstance(x, Tensor) else backend.asarray(x)


class Function:
    """One differentiable op: subclasses define ``forward(*arrays)`` and ``backward(grad)``.

    ``forward`` receives raw arrays (and keyword options) and returns the output array; it keeps
    what ``backward`` needs on ``self`` (``self.needs_grad`` says whether a backward will follow).
    ``backward`` receives ``dL/d(output)`` and returns one
    gradient (or None) per input, in the input's order; broadcasting is undone by the engine.
    """

    @classmethod
    def apply(cls, *inputs, **options):
        tensors = [as_tensor(x) for x in inputs]
        fn = cls()
        fn.needs_grad = _grad_enabled[0] and any(t.requires_grad for t in tensors)
        result = Tensor(fn.forward(*[t.data for t in tensors], **options))
        if fn.needs_grad:
            result.requires_grad = True
            fn.parents = tensors
            result.creator = fn
        return result

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

