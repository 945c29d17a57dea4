"""The autograd engine: accumulation, broadcasting, graph hygiene."""

import numpy as np
import pytest

from minikd import Tensor, backend, no_grad
from minikd.engine.autograd import Function, as_tensor, data_of, is_grad_enabled


def A(x):
    return backend.from_numpy(np.asarray(x, dtype=np.float64))


def grad_of(t):
    return backend.to_numpy(t.grad)


def test_a_tensor_used_twice_gets_both_contributions():
    x = Tensor(A([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x + x).sum().backward()  # d/dx (x² + x) = 2x + 1
    assert np.allclose(grad_of(x), [3.0, 5.0, 7.0])


def test_diamond_graph():
    x = Tensor(A([0.5, -1.0]), requires_grad=True)
    y = x.exp()
    (y * y + y.log()).sum().backward()  # d/dx (e^{2x} + x) = 2e^{2x} + 1
    assert np.allclose(grad_of(x), 2 * np.exp(2 * np.array([0.5, -1.0])) + 1)


def test_broadcasting_is_reduced_to_the_input_shape():
    a = Tensor(A(np.ones((2, 3))), requires_grad=True)
    b = Tensor(A(np.ones((3,))), requires_grad=True)
    c = Tensor(A(np.ones((2, 1))), requires_grad=True)
    (a * b + c).sum().backward()
    assert grad_of(b).shape == (3,) and np.allclose(grad_of(b), 2.0)
    assert grad_of(c).shape == (2, 1) and np.allclose(grad_of(c), 3.0)


def test_backward_twice_adds_twice_and_zero_grad_clears():
    x = Tensor(A([2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()
    assert np.allclose(grad_of(x), [8.0])
    x.zero_grad()
    assert x.grad is None


def test_leaf_gradients_are_never_shared_arrays():
    a = Tensor(A([1.0, 2.0]), requires_grad=True)
    b = Tensor(A([3.0, 4.0]), requires_grad=True)
    (a + b).backward(A([1.0, 1.0]))
    a.grad *= 10  # an optimizer may scale a gradient in place
    assert np.allclose(grad_of(b), [1.0, 1.0])


def test_user_cotangent_is_not_aliased():
    x = Tensor(A([1.0, 2.0]), requires_grad=True)
    w = A([1.0, 1.0])
    x.reshape(2).backward(w)
    w[0] = 99.0
    assert np.allclose(grad_of(x), [1.0, 1.0])


def test_deep_graph_needs_no_recursion():
    x = Tensor(A([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 0.0
    y.sum().backward()
    assert np.allclose(grad_of(x), [1.0])


def test_no_grad_records_nothing():
    x = Tensor(A([1.0]), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2
    assert is_grad_enabled() and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_detach_cuts_the_graph():
    x = Tensor(A([3.0]), requires_grad=True)
    (x * x.detach()).sum().backward()  # only the first factor carries gradient
    assert np.allclose(grad_of(x), [3.0])


def test_python_numbers_keep_float32():
    x = Tensor(backend.from_numpy(np.ones(3, dtype=np.float32)), requires_grad=True)
    y = (2.0 * x + 1) / 3.0 - 0.5
    assert y.dtype == backend.dtype("float32")


def test_backward_argument_errors():
    x = Tensor(A([1.0, 2.0]), requires_grad=True)
    with pytest.raises(ValueError, match="one-element tensor, got shape \\(2,\\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="grad has shape \\(3,\\)"):
        (x * 2).backward(A([1.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        Tensor(backend.from_numpy(np.arange(3)), requires_grad=True)
    with pytest.raises(TypeError, match="exponent must be a Python number"):
        x ** x


def test_item_and_numpy():
    t = Tensor(A([[2.5]]))
    assert t.item() == 2.5 and isinstance(t.numpy(), np.ndarray)
    with pytest.raises(ValueError, match="one element"):
        Tensor(A([1.0, 2.0])).item()


def test_leaf_gradients_are_never_shared_even_when_fresh():
    """An op may hand one fresh array to two inputs (here +'s backward, after ×2): each leaf owns its own."""
    a = Tensor(A([1.0, 2.0]), requires_grad=True)
    b = Tensor(A([3.0, 4.0]), requires_grad=True)
    ((a + b) * 2.0).backward(A([1.0, 1.0]))
    a.grad *= 10
    assert np.allclose(grad_of(b), [2.0, 2.0]) and np.allclose(grad_of(a), [20.0, 20.0])
    leaf = Tensor(A([1.0, 2.0]), requires_grad=True)
    cotangent = A([5.0, 6.0])
    leaf.backward(cotangent)  # the root itself is the leaf: it gets a copy, not the caller's array
    leaf.grad *= 0
    assert np.allclose(backend.to_numpy(cotangent), [5.0, 6.0])


class _GradientOfOneInput(Function):
    """x₀ + x₁, with a backward that (wrongly on purpose) returns a gradient for input ``keep`` only."""

    def forward(self, x0, x1, keep):
        self.keep = keep
        return x0 + x1

    def backward(self, g):
        return tuple(g if i == self.keep else None for i in range(2))


@pytest.mark.parametrize("keep", [0, 1])
def test_an_input_given_no_gradient_keeps_none_and_the_others_get_theirs(keep):
    """A None from backward means 'no gradient': that input (and what made it) stays without one,
    every other input still gets its gradient, whatever the order of the inputs."""
    w = Tensor(A([1.0, 2.0]), requires_grad=True)
    x = Tensor(A([3.0, 4.0]), requires_grad=True)
    inputs = [w * 3.0, x]  # one made by an op, one a leaf
    _GradientOfOneInput.apply(*inputs, keep=keep).backward(A([1.0, 1.0]))
    assert np.allclose(grad_of(w), [3.0, 3.0]) if keep == 0 else w.grad is None
    assert np.allclose(grad_of(x), [1.0, 1.0]) if keep == 1 else x.grad is None


def test_backward_through_a_graph_of_doublings_is_linear_in_its_depth():
    """y = x + x, sixty times: every node is used twice, each is still visited once (2⁶⁰ paths)."""
    x = Tensor(A([1.0]), requires_grad=True)
    y = x
    for _ in range(60):
        y = y + y
    y.sum().backward()
    assert grad_of(x)[0] == 2.0**60


def test_cotangent_as_a_tensor_or_python_list_and_of_another_dtype():
    """backward(grad) takes a Tensor, an array or Python data; the gradient keeps the tensor's dtype."""
    x = Tensor(backend.from_numpy(np.ones(2, dtype=np.float32)), requires_grad=True)
    for cotangent in (Tensor(A([2.0, 3.0])), A([2.0, 3.0]), [2.0, 3.0]):
        x.zero_grad()
        (x * 1.0).backward(cotangent)
        assert x.grad.dtype == backend.dtype("float32")
        assert np.allclose(grad_of(x), [2.0, 3.0])
    x.zero_grad()
    x.sum().backward()  # no cotangent: 1, of the tensor's dtype
    assert x.grad.dtype == backend.dtype("float32") and np.allclose(grad_of(x), [1.0, 1.0])
    with pytest.raises(RuntimeError, match=r"^backward\(\) on a tensor that does not require grad"):
        Tensor(A([1.0])).backward()


def test_tensor_of_a_tensor_len_repr_and_dtype_errors():
    t = Tensor(A([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), requires_grad=True)
    copy = Tensor(t)
    np.testing.assert_array_equal(copy.numpy(), t.numpy())
    assert len(t) == 3 and not copy.requires_grad
    assert repr(t) == f"Tensor({t.numpy()!r}, requires_grad=True)" and repr(copy) == f"Tensor({t.numpy()!r})"
    with pytest.raises(TypeError, match=r"got dtype int\d+$"):
        Tensor(backend.from_numpy(np.arange(3)), requires_grad=True)


def test_as_tensor_and_data_of_take_python_data():
    like = Tensor(backend.from_numpy(np.ones(2, dtype=np.float32)))
    assert as_tensor(2.5).item() == 2.5
    scalar = as_tensor(2, like=like)
    assert scalar.dtype == like.dtype and scalar.item() == 2.0
    np.testing.assert_array_equal(backend.to_numpy(data_of([1.0, 2.0])), [1.0, 2.0])
    assert data_of(like) is like.data
