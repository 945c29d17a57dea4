"""NLL, cross-entropy, KL and JSD: gradients, identities, bounds, limits."""

import math

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st
from reference import arr, tensor
from strategies import betas, logit_pairs, normal, seeds, temperatures

from minikd import Tensor, backend, gradcheck
from minikd import functional as F
from minikd.losses import divergences
from minikd.losses.functional import WeightedLoss


def grad_wrt_student(loss_fn, z):
    x = tensor(z, grad=True)
    loss_fn(x).backward()
    return backend.to_numpy(x.grad)


@given(pair=logit_pairs(), T=temperatures, beta=betas, direction=st.sampled_from(["forward", "reverse"]),
       masked=st.booleans())
def test_gradients_of_nll_cross_entropy_kl_and_jsd(pair, T, beta, direction, masked):
    z, v, y, seed = pair
    mask = arr(np.random.default_rng(seed).random(z.shape[:-1]) < 0.7) if masked else None
    if mask is not None and not bool(backend.to_numpy(mask).any()):
        mask = None
    x = tensor(z, grad=True)
    gradcheck(lambda x: F.nll_loss(F.log_softmax(x), arr(y)), x)
    gradcheck(lambda x: F.cross_entropy(x, arr(y)), x)
    gradcheck(lambda x: F.kl_div(x, arr(v), T=T, direction=direction, mask=mask), x)
    gradcheck(lambda x: F.jsd(x, arr(v), T=T, beta=beta, mask=mask), x)


@given(pair=logit_pairs(), T=temperatures, direction=st.sampled_from(["forward", "reverse"]))
def test_kl_is_nonnegative_and_zero_iff_equal_up_to_a_row_constant(pair, T, direction):
    z, v, _, seed = pair
    assert F.kl_div(tensor(z), arr(v), T=T, direction=direction).item() >= -1e-12
    shifted = v + normal(v.shape[:-1] + (1,), seed, 10.0)
    assert abs(F.kl_div(tensor(shifted), arr(v), T=T, direction=direction).item()) < 1e-12


@given(pair=logit_pairs(), T=temperatures)
def test_kl_matches_its_definition(pair, T):
    z, v, _, _ = pair
    p, q = reference.softmax_np(v, T), reference.softmax_np(z, T)
    forward = (p * (np.log(p) - np.log(q))).sum(-1).mean()
    reverse = (q * (np.log(q) - np.log(p))).sum(-1).mean()
    assert np.isclose(F.kl_div(tensor(z), arr(v), T=T).item(), forward, rtol=1e-9, atol=1e-12)
    assert np.isclose(F.kl_div(tensor(z), arr(v), T=T, direction="reverse").item(), reverse, rtol=1e-9, atol=1e-12)


@given(pair=logit_pairs(), T=temperatures)
def test_forward_kl_gradient_is_q_minus_p_over_T(pair, T):
    z, v, _, _ = pair
    n = int(np.prod(z.shape[:-1]))
    expected = (reference.softmax_np(z, T) - reference.softmax_np(v, T)) / (T * n)
    assert np.allclose(grad_wrt_student(lambda x: F.kl_div(x, arr(v), T=T), z), expected, atol=1e-12)


@given(pair=logit_pairs(), T=temperatures)
def test_soft_cross_entropy_and_forward_kl_share_a_gradient(pair, T):
    z, v, _, _ = pair
    p = Tensor(arr(reference.softmax_np(v, T)))

    def soft_cross_entropy(x):  # −Σ p log q = KL(p ‖ q) + H(p), and H(p) does not depend on the student
        return -(p * reference.log_softmax(x, T)).sum(axis=-1).mean()

    assert np.allclose(grad_wrt_student(soft_cross_entropy, z),
                       grad_wrt_student(lambda x: F.kl_div(x, arr(v), T=T), z), atol=1e-12)


@given(pair=logit_pairs())
def test_hinton_high_temperature_limit(pair):
    """T²·∂KL/∂z → ((z − z̄) − (v − v̄)) / V as T → ∞: distillation becomes logit matching."""
    z, v, _, _ = pair
    n, V = int(np.prod(z.shape[:-1])), z.shape[-1]
    target = ((z - z.mean(-1, keepdims=True)) - (v - v.mean(-1, keepdims=True))) / (V * n)
    errors = [np.abs(T * T * grad_wrt_student(lambda x: F.kl_div(x, arr(v), T=T), z) - target).max()
              for T in (1e2, 1e3, 1e4)]
    assert errors[1] < errors[0] / 5 and errors[2] < errors[1] / 5  # error = O(1/T)


@given(pair=logit_pairs(), T=temperatures)
def test_jsd_is_symmetric_at_one_half_and_bounded_by_log_2(pair, T):
    z, v, _, _ = pair
    forward = F.jsd(tensor(z), arr(v), T=T, beta=0.5).item()
    swapped = F.jsd(tensor(v), arr(z), T=T, beta=0.5).item()
    assert np.isclose(forward, swapped, rtol=1e-9, atol=1e-14)
    assert -1e-14 <= forward <= math.log(2) + 1e-12


def test_jsd_reaches_log_2_for_disjoint_distributions():
    z, v = np.array([[50.0, 0.0]]), np.array([[0.0, 50.0]])
    assert np.isclose(F.jsd(tensor(z), arr(v)).item(), math.log(2), rtol=1e-9)


@given(pair=logit_pairs(), beta=betas, T=temperatures)
def test_jsd_matches_its_definition(pair, beta, T):
    z, v, _, _ = pair
    p, q = reference.softmax_np(v, T), reference.softmax_np(z, T)
    m = beta * p + (1 - beta) * q
    expected = (beta * (p * np.log(p / m)).sum(-1) + (1 - beta) * (q * np.log(q / m)).sum(-1)).mean()
    assert np.isclose(F.jsd(tensor(z), arr(v), T=T, beta=beta).item(), expected, rtol=1e-8, atol=1e-13)


@given(pair=logit_pairs())
def test_cross_entropy_ignores_positions_and_equals_nll_of_log_softmax(pair):
    z, _, y, _ = pair
    kept = y != -100
    log_q = np.log(reference.softmax_np(z, 1.0))
    expected = -np.take_along_axis(log_q[kept], y[kept][:, None], axis=-1).mean()
    assert np.isclose(F.cross_entropy(tensor(z), arr(y)).item(), expected, rtol=1e-10)
    assert np.isclose(F.nll_loss(F.log_softmax(tensor(z)), arr(y)).item(), expected, rtol=1e-10)


@given(pair=logit_pairs(), seed=seeds)
def test_teacher_never_receives_a_gradient(pair, seed):
    z, v, y, _ = pair
    teacher = tensor(v, grad=True)
    student = tensor(z, grad=True)
    (F.distillation_loss(student, teacher, arr(y)) + F.kl_div(student, teacher) + F.jsd(student, teacher)).backward()
    assert teacher.grad is None and student.grad is not None


def _divergence_np(name, s, v):
    """D(p ‖ q) per row (the last axis) of p = softmax(v), q = softmax(s), from its definition (β = 1/2)."""
    p, q = reference.softmax_np(v, 1.0), reference.softmax_np(s, 1.0)
    if name == "forward_kl":
        return np.sum(p * np.log(p / q), axis=-1)
    if name == "reverse_kl":
        return np.sum(q * np.log(q / p), axis=-1)
    m = 0.5 * (p + q)
    return 0.5 * np.sum(p * np.log(p / m), axis=-1) + 0.5 * np.sum(q * np.log(q / m), axis=-1)


@given(seed=seeds, name=st.sampled_from(sorted(divergences.DIVERGENCES)))
def test_each_divergence_with_its_defaults_on_a_batch_of_rows(seed, name):
    """``DIVERGENCES[name](p, log_p, q, log_q)`` with its defaults (a gradient, β = 1/2) on a (2, 3, V)
    batch: each row's value is the definition, the gradient is the central difference of that value in
    s (q = softmax(s)); ``with_grad=False`` gives the same values and no gradient. ``softmax_parts``
    defaults to T = 1."""
    s, v = normal((2, 3, 5), seed), normal((2, 3, 5), seed + 1)
    p, log_p = divergences.softmax_parts(arr(v))
    q, log_q = divergences.softmax_parts(arr(s))
    np.testing.assert_allclose(backend.to_numpy(p), reference.softmax_np(v, 1.0), rtol=1e-12)
    value, grad = divergences.DIVERGENCES[name](p, log_p, q, log_q)
    np.testing.assert_allclose(backend.to_numpy(value), _divergence_np(name, s, v), rtol=1e-10, atol=1e-14)
    h, numeric = 1e-6, np.zeros_like(s)
    for index in np.ndindex(*s.shape):
        step = np.zeros_like(s)
        step[index] = h
        row = index[:-1]
        numeric[index] = (_divergence_np(name, s + step, v)[row] - _divergence_np(name, s - step, v)[row]) / (2 * h)
    np.testing.assert_allclose(backend.to_numpy(grad), numeric, rtol=1e-5, atol=1e-8)
    value_only, no_grad = divergences.DIVERGENCES[name](p, log_p, q, log_q, with_grad=False)
    assert no_grad is None
    np.testing.assert_allclose(backend.to_numpy(value_only), backend.to_numpy(value), rtol=1e-15)


def test_defaults_masks_raw_arrays_and_float32():
    """kl_div and jsd default to T = 1 (and β = 1/2); the weighted op defaults to forward KL at T = 1, β = 1/2;
    jsd's mask averages over the masked positions only; raw arrays work as student logits; float32
    logits give a float32 loss and gradient."""
    z, v = normal((2, 3, 5), 0), normal((2, 3, 5), 1)
    rows = lambda name: _divergence_np(name, z, v)  # noqa: E731  (2, 3) per position, at T = 1
    assert F.kl_div(tensor(z), arr(v)).item() == pytest.approx(rows("forward_kl").mean(), rel=1e-10)
    assert F.jsd(tensor(z), arr(v)).item() == pytest.approx(rows("jsd").mean(), rel=1e-10)
    weights = arr(np.full(6, 1 / 6))
    assert WeightedLoss.apply(tensor(z), teacher=arr(v.reshape(6, 5)), div_weights=weights).item() \
        == pytest.approx(rows("forward_kl").mean(), rel=1e-10)
    assert WeightedLoss.apply(tensor(z), teacher=arr(v.reshape(6, 5)), div_weights=weights, divergence="jsd").item() \
        == pytest.approx(rows("jsd").mean(), rel=1e-10)  # β = 1/2
    mask = np.array([[True, False, True], [False, False, True]])
    assert F.jsd(tensor(z), arr(v), mask=arr(mask)).item() == pytest.approx(rows("jsd")[mask].mean(), rel=1e-10)
    assert F.cross_entropy(arr(z), arr(np.zeros((2, 3), dtype=np.int64))).item() == \
        pytest.approx(F.cross_entropy(tensor(z), arr(np.zeros((2, 3), dtype=np.int64))).item(), rel=1e-15)
    targets = arr(np.array([[0, 1, 2], [3, 4, -100]]))
    for loss_of in (lambda x: F.kl_div(x, arr(v.astype(np.float32))), lambda x: F.jsd(x, arr(v.astype(np.float32))),
                    lambda x: F.nll_loss(F.log_softmax(x), targets)):
        x = tensor(z.astype(np.float32), grad=True)
        loss = loss_of(x)
        loss.backward()
        assert loss.dtype == x.dtype and x.grad.dtype == x.dtype
