"""The distillation objective: gradients, the λ limits, the two forms, fused = composed = finite differences."""

import numpy as np
import pytest
import reference
from hypothesis import given
from reference import arr
from strategies import betas, divergences, forms, lams, logit_pairs, seeds, temperatures

from minikd import Tensor, backend, gradcheck
from minikd import functional as F
from minikd.losses import plain
from minikd.losses.divergences import DIVERGENCES


def loss_and_grad(z, v, y, **kwargs):
    x = Tensor(arr(z), requires_grad=True)
    loss = F.distillation_loss(x, arr(v), arr(y), **kwargs)
    loss.backward()
    return backend.to_numpy(loss.data), backend.to_numpy(x.grad)


@given(pair=logit_pairs(), lam=lams, T=temperatures, divergence=divergences, beta=betas, form=forms)
def test_gradcheck_over_every_setting(pair, lam, T, divergence, beta, form):
    z, v, y, _ = pair
    x = Tensor(arr(z), requires_grad=True)
    gradcheck(lambda x: F.distillation_loss(x, arr(v), arr(y), lam=lam, T=T, divergence=divergence,
                                            beta=beta, form=form), x)


@given(pair=logit_pairs(), lam=lams, T=temperatures, divergence=divergences, beta=betas, form=forms)
def test_fused_equals_composed_from_primitives(pair, lam, T, divergence, beta, form):
    z, v, y, _ = pair
    kwargs = dict(lam=lam, T=T, divergence=divergence, beta=beta, form=form)
    fused_value, fused_grad = loss_and_grad(z, v, y, **kwargs)
    x = Tensor(arr(z), requires_grad=True)
    composed = reference.distillation_loss(x, arr(v), arr(y), **kwargs)
    composed.backward()
    assert np.isclose(fused_value, composed.item(), rtol=1e-9, atol=1e-12)
    assert np.allclose(fused_grad, backend.to_numpy(x.grad), rtol=1e-7, atol=1e-12)


@given(pair=logit_pairs(), T=temperatures)
def test_forward_kl_gradient_is_the_documented_closed_form(pair, T):
    z, v, y, _ = pair
    lam = 0.3
    zf, vf, yf = z.reshape(-1, z.shape[-1]), v.reshape(-1, z.shape[-1]), y.reshape(-1)
    kept = yf != -100
    onehot = np.eye(z.shape[-1])[np.where(kept, yf, 0)]
    softmax = reference.softmax_np
    expected = ((1 - lam) * (softmax(zf, 1.0) - onehot) + lam * T * (softmax(zf, T) - softmax(vf, T))) * kept[:, None]
    _, grad = loss_and_grad(z, v, y, lam=lam, T=T)
    assert np.allclose(grad.reshape(expected.shape), expected / kept.sum(), atol=1e-12)


@given(pair=logit_pairs(), T=temperatures, divergence=divergences, form=forms, seed=seeds)
def test_lam_zero_is_cross_entropy_exactly_and_ignores_the_teacher(pair, T, divergence, form, seed):
    z, v, y, _ = pair
    other_teacher = np.random.default_rng(seed).standard_normal(v.shape) * 5
    value, grad = loss_and_grad(z, v, y, lam=0.0, T=T, divergence=divergence, form=form)
    value_other, grad_other = loss_and_grad(z, other_teacher, y, lam=0.0, T=T, divergence=divergence, form=form)
    x = Tensor(arr(z), requires_grad=True)
    ce = F.cross_entropy(x, arr(y))
    ce.backward()
    assert value == ce.item() == value_other
    assert np.array_equal(grad, backend.to_numpy(x.grad)) and np.array_equal(grad, grad_other)


@given(pair=logit_pairs(), T=temperatures, divergence=divergences, beta=betas, seed=seeds)
def test_lam_one_is_scaled_divergence_and_ignores_target_values(pair, T, divergence, beta, seed):
    z, v, y, _ = pair
    kept = y != -100
    other_targets = np.where(kept, np.random.default_rng(seed).integers(0, z.shape[-1], y.shape), -100)
    kwargs = dict(lam=1.0, T=T, divergence=divergence, beta=beta)
    value, grad = loss_and_grad(z, v, y, **kwargs)
    value_other, grad_other = loss_and_grad(z, v, other_targets, **kwargs)
    assert value == value_other and np.array_equal(grad, grad_other)  # only which positions are ignored matters
    d = (F.jsd(Tensor(arr(z)), arr(v), T=T, beta=beta, mask=arr(kept)) if divergence == "jsd" else
         F.kl_div(Tensor(arr(z)), arr(v), T=T, direction=divergence.split("_")[0], mask=arr(kept)))
    assert np.isclose(value, T * T * d.item(), rtol=1e-10, atol=1e-14)


@given(pair=logit_pairs(), T=temperatures, divergence=divergences, lam=lams)
def test_loss_is_affine_in_lam(pair, T, divergence, lam):
    z, v, y, _ = pair
    at = {w: loss_and_grad(z, v, y, lam=w, T=T, divergence=divergence) for w in (0.0, lam, 1.0)}
    assert np.isclose(at[lam][0], (1 - lam) * at[0.0][0] + lam * at[1.0][0], rtol=1e-10, atol=1e-12)
    assert np.allclose(at[lam][1], (1 - lam) * at[0.0][1] + lam * at[1.0][1], rtol=1e-9, atol=1e-14)


@given(pair=logit_pairs(), T=temperatures, divergence=divergences)
def test_value_and_gradient_converge_linearly_at_both_ends(pair, T, divergence):
    z, v, y, _ = pair
    ends = {w: loss_and_grad(z, v, y, lam=w, T=T, divergence=divergence) for w in (0.0, 1.0)}
    gap_value = abs(ends[1.0][0] - ends[0.0][0])
    gap_grad = np.abs(ends[1.0][1] - ends[0.0][1]).max()
    for end, toward in ((0.0, 1.0), (1.0, -1.0)):
        for eps in (1e-1, 1e-2, 1e-3, 1e-4):
            value, grad = loss_and_grad(z, v, y, lam=end + toward * eps, T=T, divergence=divergence)
            # |L(end ± ε) − L(end)| = ε·|L(1) − L(0)|: the error shrinks linearly with ε
            assert np.isclose(abs(value - ends[end][0]), eps * gap_value, rtol=1e-6, atol=1e-12)
            assert np.isclose(np.abs(grad - ends[end][1]).max(), eps * gap_grad, rtol=1e-6, atol=1e-14)


@given(pair=logit_pairs(), T=temperatures, divergence=divergences, lam_additive=lams.map(lambda w: 4 * w))
def test_additive_form_is_a_rescaled_interpolation(pair, T, divergence, lam_additive):
    """CE + λ'·sD = (1 + λ')·[(1 − λ)·CE + λ·sD] with λ = λ'/(1 + λ')."""
    z, v, y, _ = pair
    lam = lam_additive / (1 + lam_additive)
    additive = loss_and_grad(z, v, y, lam=lam_additive, T=T, divergence=divergence, form="additive")
    interpolated = loss_and_grad(z, v, y, lam=lam, T=T, divergence=divergence)
    assert np.isclose(additive[0], (1 + lam_additive) * interpolated[0], rtol=1e-10, atol=1e-12)
    assert np.allclose(additive[1], (1 + lam_additive) * interpolated[1], rtol=1e-9, atol=1e-14)


@given(pair=logit_pairs(), T=temperatures)
def test_scale_T2_multiplies_the_soft_term_by_T_squared(pair, T):
    z, v, y, _ = pair
    scaled = loss_and_grad(z, v, y, lam=1.0, T=T, scale_T2=True)
    unscaled = loss_and_grad(z, v, y, lam=1.0, T=T, scale_T2=False)
    assert np.isclose(scaled[0], T * T * unscaled[0], rtol=1e-10, atol=1e-14)


def test_divergence_is_averaged_over_the_positions_cross_entropy_keeps():
    z = np.random.default_rng(0).standard_normal((2, 3, 5))
    v = np.random.default_rng(1).standard_normal((2, 3, 5))
    y = np.array([[1, -100, 2], [-100, -100, 4]])
    kept = y != -100
    value, grad = loss_and_grad(z, v, y, lam=1.0, T=2.0)
    assert np.isclose(value, 4.0 * F.kl_div(Tensor(arr(z[kept])), arr(v[kept]), T=2.0).item(), rtol=1e-12)
    assert np.all(grad[~kept] == 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_result_keeps_the_logits_dtype(dtype):
    z = np.random.default_rng(0).standard_normal((4, 6)).astype(dtype)
    value, grad = loss_and_grad(z, z[::-1].copy(), np.array([0, 1, 2, 3]))
    assert value.dtype == dtype and grad.dtype == dtype


@given(pair=logit_pairs(), T=temperatures, divergence=divergences, beta=betas)
def test_plain_value_only_call_gives_the_same_loss_and_no_gradient(pair, T, divergence, beta):
    """``plain.weighted_loss_and_grad(..., with_grad=False)``: the loss of the call with a gradient,
    and None for dL/dz (as documented; evaluation under no_grad takes this path)."""
    z, v, y, seed = pair
    rows = lambda x: arr(x.reshape(-1, x.shape[-1]))  # noqa: E731  (N, V)
    targets = arr(np.where(y == -100, 0, y).reshape(-1))
    a, b = (arr(weights) for weights in np.random.default_rng(seed).random((2, targets.shape[0])))
    args = (rows(z), rows(v), targets, a, b, T, DIVERGENCES[divergence], beta)
    loss, grad = plain.weighted_loss_and_grad(*args, with_grad=True)
    value_only, no_grad = plain.weighted_loss_and_grad(*args, with_grad=False)
    assert grad is not None and no_grad is None
    np.testing.assert_allclose(backend.to_numpy(value_only), backend.to_numpy(loss), rtol=1e-15)


def test_defaults_are_lambda_one_half_at_T_two_and_beta_matters_only_for_jsd():
    """distillation_loss(z, v, y) is (1 − ½)·CE + ½·T²·KL at T = 2; β (even one JSD would refuse)
    changes nothing for the KL divergences."""
    z, v = np.random.default_rng(3).standard_normal((2, 3, 5)), np.random.default_rng(4).standard_normal((2, 3, 5))
    y = np.array([[0, 1, 2], [3, 4, -100]])
    expected = reference.distillation_loss(Tensor(arr(z)), arr(v), arr(y), lam=0.5, T=2.0).item()
    assert F.distillation_loss(Tensor(arr(z)), arr(v), arr(y)).item() == pytest.approx(expected, rel=1e-10)
    for divergence in ("forward_kl", "reverse_kl"):
        with_beta = F.distillation_loss(Tensor(arr(z)), arr(v), arr(y), divergence=divergence, beta=2.0).item()
        assert with_beta == F.distillation_loss(Tensor(arr(z)), arr(v), arr(y), divergence=divergence).item()
