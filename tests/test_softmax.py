"""Softmax with temperature: gradients, limits in T, invariances."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from reference import tensor
from strategies import array_shapes, logit_shapes, normal, seeds, temperatures

from minikd import backend, gradcheck
from minikd import functional as F


def values(t):
    return backend.to_numpy(t.data)


@given(shape=array_shapes(), seed=seeds, T=temperatures, data=st.data())
def test_softmax_and_log_softmax_gradients(shape, seed, T, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = tensor(normal(shape, seed, 2.0), grad=True)
    gradcheck(lambda x: F.softmax(x, T=T, axis=axis), x)
    gradcheck(lambda x: F.log_softmax(x, T=T, axis=axis), x)


@given(shape=logit_shapes(), seed=seeds, T=temperatures)
def test_softmax_with_T_equals_softmax_of_x_over_T(shape, seed, T):
    x = normal(shape, seed, 3.0)
    assert np.allclose(values(F.softmax(tensor(x), T=T)), values(F.softmax(tensor(x / T))), atol=1e-12)
    assert np.allclose(values(F.log_softmax(tensor(x), T=T)), values(F.log_softmax(tensor(x / T))), atol=1e-9)


@given(shape=logit_shapes(), seed=seeds, T=temperatures, shift=st.floats(-100, 100))
def test_invariant_to_a_constant_added_along_the_class_axis(shape, seed, T, shift):
    x = normal(shape, seed, 3.0)
    row_shift = normal(shape[:-1] + (1,), seed + 1) * shift
    assert np.allclose(values(F.softmax(tensor(x), T=T)), values(F.softmax(tensor(x + row_shift), T=T)), atol=1e-10)


@given(shape=logit_shapes(), seed=seeds, T=temperatures)
def test_probabilities_are_positive_and_sum_to_one(shape, seed, T):
    y = values(F.softmax(tensor(normal(shape, seed, 3.0)), T=T))
    assert np.all(y >= 0) and np.allclose(y.sum(axis=-1), 1.0)
    log_y = values(F.log_softmax(tensor(normal(shape, seed, 3.0)), T=T))
    assert np.all(log_y <= 1e-12) and np.allclose(np.exp(log_y).sum(axis=-1), 1.0)


@given(shape=logit_shapes(), seed=seeds)
def test_high_temperature_tends_to_uniform(shape, seed):
    x = normal(shape, seed, 3.0)
    errors = [np.abs(values(F.softmax(tensor(x), T=T)) - 1.0 / shape[-1]).max() for T in (1e1, 1e2, 1e3)]
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 20.0 / 1e3  # |softmax − 1/V| = O(range(x) / T)


@given(shape=logit_shapes(), seed=seeds)
def test_low_temperature_tends_to_one_hot_of_the_argmax(shape, seed):
    x = normal(shape, seed, 3.0)
    one_hot = np.eye(shape[-1])[x.argmax(axis=-1)]
    gap = np.sort(x, axis=-1)[..., -1] - np.sort(x, axis=-1)[..., -2]  # continuous draws: no ties
    T = float(gap.min()) / 50.0
    assert np.abs(values(F.softmax(tensor(x), T=T)) - one_hot).max() < shape[-1] * np.exp(-50.0) + 1e-15


def test_temperature_flattens_a_teacher_distribution():
    x = tensor([4.0, 2.0, 0.0, -1.0])
    entropy = [-(p * np.log(p)).sum() for p in (values(F.softmax(x, T=T)) for T in (0.5, 1, 2, 4))]
    assert all(a < b for a, b in zip(entropy, entropy[1:]))


def test_softmax_along_another_axis_and_the_ops_defaults():
    """``axis`` picks the axis that sums to one; the ops' own defaults are T = 1 on the last axis."""
    x = normal((3, 4), 0)
    expected0 = np.exp(x) / np.exp(x).sum(axis=0, keepdims=True)
    np.testing.assert_allclose(values(F.softmax(tensor(x), axis=0)), expected0, rtol=1e-12)
    np.testing.assert_allclose(values(F.log_softmax(tensor(x), axis=0)), np.log(expected0), rtol=1e-12)
    expected = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(values(F.Softmax.apply(tensor(x))), expected, rtol=1e-12)
    np.testing.assert_allclose(values(F.LogSoftmax.apply(tensor(x))), np.log(expected), rtol=1e-12)
