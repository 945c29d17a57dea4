"""Test helpers: arrays on the active backend, and the losses composed from primitive Tensor ops
(an independent reference for the fused closed forms)."""

import numpy as np

from minikd import Tensor, backend


def arr(x):
    """A NumPy array (or Python data) copied to the active backend."""
    return backend.from_numpy(np.asarray(x))


def tensor(x, grad=False):
    """A Tensor on the active backend."""
    return Tensor(arr(x), requires_grad=grad)


def params(model):
    """{name: host copy} of a model's parameters."""
    return {name: backend.to_numpy(p.data).copy() for name, p in model.named_parameters()}


def assert_same_params(a, b):
    """Two models' parameters are equal bit for bit."""
    expected = params(b)
    for name, value in params(a).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def softmax_np(x, T):
    """softmax(x/T) in plain NumPy, for expected values."""
    e = np.exp((x - x.max(axis=-1, keepdims=True)) / T)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x, T):
    """log softmax(x/T) from primitives; the max shift is a constant, so it does not change the gradient."""
    s = x / T
    shifted = s - Tensor(backend.xp().max(s.data, axis=-1, keepdims=True))
    return shifted - shifted.exp().sum(axis=-1, keepdims=True).log()


def divergence_rows(z, v, T, divergence, beta=0.5):
    """D(p_T ‖ q_T) per position, shape [N], from primitives (z is a Tensor [N, V], v an array)."""
    log_q, log_p = log_softmax(z, T), log_softmax(Tensor(v), T)
    q, p = log_q.exp(), log_p.exp()
    if divergence == "forward_kl":
        return (p * (log_p - log_q)).sum(axis=-1)
    if divergence == "reverse_kl":
        return (q * (log_q - log_p)).sum(axis=-1)
    log_m = (p * beta + q * (1 - beta)).log()
    return (p * (log_p - log_m)).sum(axis=-1) * beta + (q * (log_q - log_m)).sum(axis=-1) * (1 - beta)


def distillation_loss(z, v, targets, lam, T, divergence="forward_kl", beta=0.5, scale_T2=True,
                      form="interpolate", ignore_index=-100):
    """The distillation objective built from primitives, mirroring functional.distillation_loss."""
    V = z.shape[-1]
    z = z.reshape(-1, V)
    v = backend.xp().reshape(v, (-1, V))
    targets = backend.to_numpy(targets).reshape(-1)
    kept = np.flatnonzero(targets != ignore_index)
    rows, cols = backend.from_numpy(kept), backend.from_numpy(targets[kept])
    ce = -log_softmax(z, 1.0)[rows, cols].sum() / len(kept)
    d = divergence_rows(z, v, T, divergence, beta)[rows].sum() / len(kept)
    s = T * T if scale_T2 else 1.0
    return ce * (1 - lam) + d * (lam * s) if form == "interpolate" else ce + d * (lam * s)
