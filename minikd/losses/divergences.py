"""Per-row divergences between the teacher's p = softmax(v/T) and the student's q = softmax(s), s = z/T.

Each function takes both distributions and their logs (rows along the last axis) and returns
``(value per row, dD/ds)``: the value and its closed-form gradient with respect to the student's
scaled logits s, side by side. The chain rule to the raw logits z adds the factor 1/T.
"""

import math

from minikd.engine import backend


def softmax_parts(x, T=1.0, axis=-1):
    """``(softmax(x/T), log_softmax(x/T))`` computed stably from ``s = (x − max x)/T``.

    log q = s − log Σ exp(s) with every ``s <= 0``, so no exp overflows, for any finite x and T.
    """
    return softmax_of_shifted(x - backend.xp().max(x, axis=axis, keepdims=True), T, axis)


def softmax_of_shifted(shifted, T=1.0, axis=-1):
    """``softmax_parts`` for logits already shifted by their maximum (``shifted <= 0``)."""
    xp = backend.xp()
    scaled = shifted / T  # (..., V), every entry <= 0
    unnormalised = xp.exp(scaled)
    total = xp.sum(unnormalised, axis=axis, keepdims=True)  # (..., 1), >= 1: its log is finite
    return unnormalised / total, scaled - xp.log(total)


def _row_dot(weights, values):
    """Σ_j w_ij·v_ij for every row i (the last axis), in one pass."""
    return backend.xp().vecdot(weights, values, axis=-1)


def forward_kl(p, log_p, q, log_q, beta=None, with_grad=True):
    """KL(p ‖ q) = Σ p (log p − log q), mode covering (Hinton et al., 2015).

    dKL/ds = q − p.
    """
    value = _row_dot(p, log_p - log_q)
    return value, (q - p if with_grad else None)


def reverse_kl(p, log_p, q, log_q, beta=None, with_grad=True):
    """KL(q ‖ p) = Σ q (log q − log p), mode seeking.

    dKL/ds = q ⊙ (r − KL) with r = log q − log p  (the softmax Jacobian applied to r; its Σq·dr term is 0).
    """
    log_ratio = log_q - log_p  # r
    value = _row_dot(q, log_ratio)
    if not with_grad:
        return value, None
    return value, q * (log_ratio - value[..., None])


def jsd(p, log_p, q, log_q, beta=0.5, with_grad=True):
    """Generalised Jensen–Shannon: β·KL(p ‖ M) + (1−β)·KL(q ‖ M), with M = β·p + (1−β)·q.

    dJSD/dq = (1−β)·log(q/M), so dJSD/ds = (1−β)·q ⊙ (log(q/M) − KL(q ‖ M)).
    log M is a log-sum-exp of log β + log p and log(1−β) + log q, finite wherever log p, log q are.
    """
    xp = backend.xp()
    log_m = xp.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
    log_q_over_m = log_q - log_m
    kl_qm = _row_dot(q, log_q_over_m)
    value = beta * _row_dot(p, log_p - log_m) + (1.0 - beta) * kl_qm
    if not with_grad:
        return value, None
    return value, (1.0 - beta) * q * (log_q_over_m - kl_qm[..., None])


DIVERGENCES = {"forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": jsd}
