"""Every primitive op: gradient-checked over Hypothesis-drawn shapes, and against closed forms."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from strategies import array_shapes, normal, seeds

from minikd import Tensor, backend, gradcheck


def leaf(shape, seed, positive=False):
    data = normal(shape, seed)
    if positive:
        data = np.abs(data) + 0.5  # away from the pole of log and div
    return Tensor(backend.from_numpy(data), requires_grad=True)


def broadcast_partner(shape, seed):
    """A shape that broadcasts against ``shape``: some axes set to 1, maybe fewer axes."""
    rng = np.random.default_rng(seed)
    partner = [1 if rng.random() < 0.4 else n for n in shape]
    return tuple(partner[int(rng.integers(0, len(partner))):]) or (1,)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}
UNARY = {
    "neg": (lambda a: -a, False),
    "pow 3": (lambda a: a**3, False),
    "pow -1.5": (lambda a: a**-1.5, True),
    "exp": (lambda a: a.exp(), False),
    "log": (lambda a: a.log(), True),
}


@given(shape=array_shapes(), seed=seeds, op=st.sampled_from(sorted(BINARY)))
def test_binary_ops_with_broadcasting(shape, seed, op):
    a = leaf(shape, seed)
    b = leaf(broadcast_partner(shape, seed), seed + 1, positive=(op == "div"))
    gradcheck(BINARY[op], a, b)
    if op != "div":  # a may come near 0, so only b is a divisor
        gradcheck(BINARY[op], b, a)


@given(shape=array_shapes(), seed=seeds, op=st.sampled_from(sorted(UNARY)))
def test_unary_ops(shape, seed, op):
    fn, positive = UNARY[op]
    gradcheck(fn, leaf(shape, seed, positive))


@given(batch=st.lists(st.integers(1, 3), max_size=2), m=st.integers(1, 4), k=st.integers(1, 4),
       n=st.integers(1, 4), seed=seeds, broadcast_b=st.booleans())
def test_batched_matmul(batch, m, k, n, seed, broadcast_b):
    a = leaf(tuple(batch) + (m, k), seed)
    b = leaf((k, n) if broadcast_b else tuple(batch) + (k, n), seed + 1)
    gradcheck(lambda a, b: a @ b, a, b)


def test_matmul_with_vectors():
    a, v = leaf((3, 4), 0), leaf((4,), 1)
    gradcheck(lambda a, v: a @ v, a, v)
    gradcheck(lambda v, a: v @ a.T, v, a)


@given(shape=array_shapes(), seed=seeds, data=st.data())
def test_reductions(shape, seed, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    keepdims = data.draw(st.booleans())
    x = leaf(shape, seed)
    gradcheck(lambda x: x.sum(axis=axis, keepdims=keepdims), x)
    gradcheck(lambda x: x.mean(axis=axis, keepdims=keepdims), x)
    gradcheck(lambda x: x.max(axis=axis, keepdims=keepdims), x)  # continuous draws: no ties


def test_max_splits_gradient_between_ties():
    x = Tensor(backend.from_numpy(np.array([1.0, 3.0, 3.0, 2.0])), requires_grad=True)
    x.max().backward()
    assert np.allclose(backend.to_numpy(x.grad), [0.0, 0.5, 0.5, 0.0])


@given(shape=array_shapes(min_dims=2), seed=seeds, data=st.data())
def test_reshape_and_transpose(shape, seed, data):
    perm = data.draw(st.permutations(range(len(shape))))
    x = leaf(shape, seed)
    gradcheck(lambda x: x.reshape(-1, shape[-1]), x)
    gradcheck(lambda x: x.transpose(*perm), x)


@given(shape=array_shapes(), seed=seeds)
def test_getitem_gathers_and_scatters_repeated_indices(shape, seed):
    rng = np.random.default_rng(seed)
    rows = backend.from_numpy(rng.integers(0, shape[0], size=5))  # repeats are likely
    x = leaf(shape, seed)
    gradcheck(lambda x: x[rows], x)
    gradcheck(lambda x: x[..., :1], x)


def test_getitem_repeated_index_adds_up():
    x = Tensor(backend.from_numpy(np.zeros(3)), requires_grad=True)
    x[backend.from_numpy(np.array([0, 0, 2, 0]))].sum().backward()
    assert np.allclose(backend.to_numpy(x.grad), [3.0, 0.0, 1.0])


def test_matmul_gradient_closed_form():
    rng = np.random.default_rng(0)
    a_np, b_np, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((2, 3, 5))
    a, b = Tensor(backend.from_numpy(a_np), requires_grad=True), Tensor(backend.from_numpy(b_np), requires_grad=True)
    (a @ b).backward(backend.from_numpy(w))
    assert np.allclose(backend.to_numpy(a.grad), w @ b_np.T)
    assert np.allclose(backend.to_numpy(b.grad), np.einsum("bij,bik->jk", a_np, w))
