"""The NumPy fast paths (fused, chunked, threaded, in-place) equal the plain closed forms they replace.

Each test runs both paths on the NumPy backend (the only one the fast paths serve), so it runs the
same in every CI pass: values and gradients agree to float64 rounding over Hypothesis-drawn shapes.
"""

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import betas, divergences, forms, lams, logit_pairs, seeds, temperatures

from minikd import Tensor, backend, gradcheck
from minikd import functional as F
from minikd.losses import fused
from minikd.nn import fused_layers, layers

ROUNDING = dict(rtol=1e-12, atol=1e-14)  # float64: the two paths differ only in the order of sums


def run_both(fn, *arrays):
    """``fn(*tensors)`` backpropagated with a fixed random cotangent on the plain and the fast path:
    [(value, [grad of each input])] for plain, fast."""
    results = []
    with backend.using("numpy"):
        for fast in (False, True):
            with backend.fast_paths(fast):
                tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
                value = fn(*tensors)
                cotangent = np.random.default_rng(0).standard_normal(value.shape)
                value.backward(cotangent if value.ndim else None)
                results.append((value.numpy(), [t.grad for t in tensors]))
    return results


def assert_equal_paths(results):
    (plain_value, plain_grads), (fast_value, fast_grads) = results
    np.testing.assert_allclose(fast_value, plain_value, **ROUNDING)
    for plain, fast in zip(plain_grads, fast_grads):
        np.testing.assert_allclose(fast, plain, **ROUNDING)


@contextlib.contextmanager
def small_blocks(rows_per_block, V):
    """The fused loss on every size, cut into blocks of ``rows_per_block`` rows: several blocks on
    threads, and a ragged last one."""
    saved = fused.MIN_ELEMENTS, fused.CHUNK_ELEMENTS
    fused.MIN_ELEMENTS, fused.CHUNK_ELEMENTS = 0, rows_per_block * V
    try:
        yield
    finally:
        fused.MIN_ELEMENTS, fused.CHUNK_ELEMENTS = saved


@given(pair=logit_pairs(), lam=lams, T=temperatures, divergence=divergences, beta=betas, form=forms,
       rows_per_block=st.integers(1, 4))
def test_fused_distillation_loss_equals_the_plain_one(pair, lam, T, divergence, beta, form, rows_per_block):
    z, v, y, _ = pair
    with small_blocks(rows_per_block, z.shape[-1]):
        assert_equal_paths(run_both(lambda x: F.distillation_loss(x, v, y, lam=lam, T=T, divergence=divergence,
                                                                  beta=beta, form=form), z))


@given(pair=logit_pairs(), T=temperatures, beta=betas)
def test_fused_cross_entropy_kl_and_jsd_equal_the_plain_ones(pair, T, beta):
    z, v, y, _ = pair
    with small_blocks(2, z.shape[-1]):
        assert_equal_paths(run_both(lambda x: F.cross_entropy(x, y), z))
        assert_equal_paths(run_both(lambda x: F.kl_div(x, v, T=T, direction="reverse"), z))
        assert_equal_paths(run_both(lambda x: F.jsd(x, v, T=T, beta=beta), z))


def test_fused_loss_runs_only_where_it_pays(monkeypatch):
    """Large logits under NumPy take the fused path; small ones, ``fast_paths(False)`` and strict the plain one."""
    calls = []
    original = fused.weighted_loss_and_grad
    monkeypatch.setattr(fused, "weighted_loss_and_grad", lambda *args: calls.append(1) or original(*args))

    def loss_on(name, rows, fast=True):
        calls.clear()
        with backend.using(name), backend.fast_paths(fast):
            z = backend.from_numpy(np.random.default_rng(0).standard_normal((rows, 64)))
            F.cross_entropy(Tensor(z, requires_grad=True), backend.from_numpy(np.zeros(rows, dtype=np.int64)))
        return len(calls)

    big = fused.MIN_ELEMENTS // 64
    assert loss_on("numpy", big) == 1
    assert loss_on("numpy", big - 1) == 0
    assert loss_on("numpy", big, fast=False) == 0
    assert loss_on("strict", big) == 0


@st.composite
def activations(draw):
    """(B, S, C) float64 activations and a seed."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(2, 8)))
    seed = draw(seeds)
    return np.random.default_rng(seed).standard_normal(shape) * 2, seed


@given(case=activations())
def test_in_place_layer_norm_backward_equals_the_plain_one(case):
    x, seed = case
    rng = np.random.default_rng(seed + 1)
    gamma, beta = rng.standard_normal(x.shape[-1]), rng.standard_normal(x.shape[-1])
    assert_equal_paths(run_both(layers.layer_norm, x, gamma, beta))


@given(case=activations())
def test_in_place_gelu_backward_equals_the_plain_one(case):
    x, _ = case
    assert_equal_paths(run_both(layers.gelu, x))


@given(B=st.integers(1, 2), S=st.integers(1, 6), H=st.integers(1, 3), D=st.integers(1, 4), seed=seeds)
def test_in_place_attention_equals_the_plain_one(B, S, H, D, seed):
    qkv = np.random.default_rng(seed).standard_normal((B, S, 3 * H * D))
    assert_equal_paths(run_both(lambda t: layers.causal_self_attention(t, H), qkv))


def test_the_plain_layer_backwards_pass_gradcheck_on_numpy_too():
    """The strict CI pass checks the plain forms everywhere; this checks them under NumPy as well."""
    rng = np.random.default_rng(4)
    x, qkv = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 4, 12))
    with backend.using("numpy"), backend.fast_paths(False):
        leaf = lambda a: Tensor(a, requires_grad=True)  # noqa: E731
        gradcheck(layers.layer_norm, leaf(x), leaf(rng.standard_normal(5)), leaf(rng.standard_normal(5)))
        gradcheck(layers.gelu, leaf(x))
        gradcheck(lambda t: layers.causal_self_attention(t, 2), leaf(qkv))


def test_the_fused_constants_are_the_layers_constants():
    assert (fused_layers.GELU_C, fused_layers.GELU_A) == (layers.GELU_C, layers.GELU_A)
    assert math.isclose(layers.GELU_C, math.sqrt(2 / math.pi), rel_tol=1e-15)


def test_fast_leaf_gradients_are_never_shared():
    """The fast path keeps a fresh gradient without a copy, but two leaves never share one array."""
    with backend.using("numpy"):
        for fast in (False, True):
            with backend.fast_paths(fast):
                a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
                (a + b).backward(np.arange(3.0))  # Add hands the same array to both leaves
                a.grad *= 10.0  # an optimizer or clip_grad_norm updates .grad in place
                assert np.array_equal(b.grad, [0.0, 1.0, 2.0])
