"""The primitive differentiable ops, each a Function with forward and backward side by side.

Notation in the docstrings: ``g = dL/dy`` is the upstream gradient of the op's output ``y``;
each backward returns ``dL/dx`` for every input ``x``. Broadcasting is undone by the engine.
"""

from minikd.engine import backend
from minikd.engine.autograd import Function, Tensor, as_tensor


def _pair(a, b):
    """Two operands as Tensors; a Python number takes the dtype of the other operand."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


# ---- elementwise arithmetic -------------------------------------------------------------------
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        """d(a+b)/da = 1, d(a+b)/db = 1."""
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        """d(a-b)/da = 1, d(a-b)/db = -1."""
        return g, -g


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        """d(ab)/da = b, d(ab)/db = a."""
        return g * self.b, g * self.a


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        """d(a/b)/da = 1/b, d(a/b)/db = -a/b²."""
        gb = g / self.b
        return gb, -gb * self.a / self.b


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        """d(-a)/da = -1."""
        return (-g,)


class Pow(Function):
    def forward(self, a, exponent):
        self.a, self.p = a, exponent
        return a**exponent

    def backward(self, g):
        """d(a^p)/da = p·a^(p-1)  (p is a constant)."""
        return (g * self.p * self.a ** (self.p - 1),)


class Exp(Function):
    def forward(self, a):
        self.y = backend.xp().exp(a)
        return self.y

    def backward(self, g):
        """d(e^a)/da = e^a  (reuses the output)."""
        return (g * self.y,)


class Log(Function):
    def forward(self, a):
        self.a = a
        return backend.xp().log(a)

    def backward(self, g):
        """d(log a)/da = 1/a."""
        return (g / self.a,)


# ---- linear algebra ---------------------------------------------------------------------------
class MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        """For C = A @ B (batched over leading axes): dA = g @ Bᵀ, dB = Aᵀ @ g (transposing the last two axes)."""
        xp = backend.xp()
        a = xp.expand_dims(self.a, axis=0) if self.a.ndim == 1 else self.a  # a vector is a one-row matrix
        b = xp.expand_dims(self.b, axis=-1) if self.b.ndim == 1 else self.b  # ... or a one-column matrix
        if self.a.ndim == 1:
            g = xp.expand_dims(g, axis=-2)
        if self.b.ndim == 1:
            g = xp.expand_dims(g, axis=-1)
        ga = g @ xp.matrix_transpose(b)
        gb = xp.matrix_transpose(a) @ g
        if self.a.ndim == 1:
            ga = xp.squeeze(ga, axis=-2)
        if self.b.ndim == 1:
            gb = xp.squeeze(gb, axis=-1)
        return ga, gb


# ---- reductions -------------------------------------------------------------------------------
def _axes(axis, ndim):
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axis))


def _expand_reduced(g, axes, keepdims):
    """Put back the reduced axes (as size 1) so ``g`` broadcasts against the input."""
    if keepdims:
        return g
    xp = backend.xp()
    for axis in axes:
        g = xp.expand_dims(g, axis=axis)
    return g


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _axes(axis, a.ndim), keepdims
        return backend.xp().sum(a, axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        """d(Σ_i a_i)/da_j = 1: the gradient is copied to every summed element."""
        g = _expand_reduced(g, self.axes, self.keepdims)
        return (backend.xp().broadcast_to(g, self.shape),)


class Mean(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _axes(axis, a.ndim), keepdims
        self.count = 1
        for ax in self.axes:
            self.count *= a.shape[ax]
        return backend.xp().mean(a, axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        """d(mean a)/da_j = 1/n, n the number of averaged elements."""
        g = _expand_reduced(g, self.axes, self.keepdims) / self.count
        return (backend.xp().broadcast_to(g, self.shape),)


class Max(Function):
    def forward(self, a, axis=None, keepdims=False):
        xp = backend.xp()
        self.axes, self.keepdims = _axes(axis, a.ndim), keepdims
        y = xp.max(a, axis=self.axes, keepdims=True)
        self.is_max = xp.astype(a == y, a.dtype)  # 1 where the maximum is attained, else 0
        return y if keepdims else xp.squeeze(y, axis=self.axes)

    def backward(self, g):
        """d(max a)/da_j = 1[a_j = max] / (number of ties): ties share the gradient equally."""
        ties = backend.xp().sum(self.is_max, axis=self.axes, keepdims=True)
        return (_expand_reduced(g, self.axes, self.keepdims) * self.is_max / ties,)


# ---- shape --------------------------------------------------------------------------------------
class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return backend.xp().reshape(a, shape)

    def backward(self, g):
        """Reshaping moves no values: the gradient is reshaped back."""
        return (backend.xp().reshape(g, self.shape),)


class Transpose(Function):
    def forward(self, a, axes=None):
        self.axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
        return backend.xp().permute_dims(a, self.axes)

    def backward(self, g):
        """A permutation's gradient is the inverse permutation of g."""
        inverse = [0] * len(self.axes)
        for i, ax in enumerate(self.axes):
            inverse[ax] = i
        return (backend.xp().permute_dims(g, tuple(inverse)),)


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        if _is_integer_array(index):  # rows picked along axis 0: the standard spells it take
            return backend.xp().take(a, index, axis=0)
        return a[index]

    def backward(self, g):
        """y = a[index]: dL/da is g scattered back to the indexed places, repeated indices adding up."""
        grad = backend.xp().zeros(self.shape, dtype=g.dtype, device=backend.device())
        if _has_integer_array(self.index):  # may repeat: a scatter-add, never grad[index] += g
            return (backend.scatter_add(grad, self.index, g),)
        grad[self.index] = g  # slices, integers and boolean masks select each element at most once
        return (grad,)


def _is_integer_array(index):
    return hasattr(index, "dtype") and backend.is_int_dtype(index.dtype) and index.ndim == 1


def _has_integer_array(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(part, "dtype") and backend.is_int_dtype(part.dtype) for part in parts)


# ---- the functions Tensor's operators call ----------------------------------------------------
def add(a, b):
    return Add.apply(*_pair(a, b))


def sub(a, b):
    return Sub.apply(*_pair(a, b))


def mul(a, b):
    return Mul.apply(*_pair(a, b))


def div(a, b):
    return Div.apply(*_pair(a, b))


def neg(a):
    return Neg.apply(a)


def pow(a, exponent):  # noqa: A001  (the name of the op)
    if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float)):
        raise TypeError(f"exponent must be a Python number, got {type(exponent).__name__}")
    return Pow.apply(a, exponent=exponent)


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def matmul(a, b):
    return MatMul.apply(a, b)


def sum(a, axis=None, keepdims=False):  # noqa: A001
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims=False):  # noqa: A001
    return Max.apply(a, axis=axis, keepdims=keepdims)


def reshape(a, shape):
    return Reshape.apply(a, shape=tuple(shape))


def transpose(a, axes=None):
    return Transpose.apply(a, axes=axes)


def getitem(a, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(a, index=index)


# ---- Tensor's operators: x + y is add(x, y), x @ w is matmul(x, w), and so on ---------------------
# They are attached here rather than written in autograd.py, so that autograd never imports ops.
def _flatten(args):
    """``reshape(2, 3)`` and ``reshape((2, 3))`` mean the same."""
    return args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


Tensor.__add__ = lambda self, other: add(self, other)
Tensor.__radd__ = lambda self, other: add(other, self)
Tensor.__sub__ = lambda self, other: sub(self, other)
Tensor.__rsub__ = lambda self, other: sub(other, self)
Tensor.__mul__ = lambda self, other: mul(self, other)
Tensor.__rmul__ = lambda self, other: mul(other, self)
Tensor.__truediv__ = lambda self, other: div(self, other)
Tensor.__rtruediv__ = lambda self, other: div(other, self)
Tensor.__neg__ = lambda self: neg(self)
Tensor.__pow__ = lambda self, exponent: pow(self, exponent)
Tensor.__matmul__ = lambda self, other: matmul(self, other)
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)
Tensor.__getitem__ = lambda self, index: getitem(self, index)
Tensor.sum = lambda self, axis=None, keepdims=False: sum(self, axis, keepdims)
Tensor.mean = lambda self, axis=None, keepdims=False: mean(self, axis, keepdims)
Tensor.max = lambda self, axis=None, keepdims=False: max(self, axis, keepdims)
Tensor.reshape = lambda self, *shape: reshape(self, _flatten(shape))
Tensor.transpose = lambda self, *axes: transpose(self, _flatten(axes) or None)
Tensor.T = property(lambda self: transpose(self, None))
Tensor.exp = lambda self: exp(self)
Tensor.log = lambda self: log(self)
