"""Reference solution: the distillation objective in both forms, and its gradient."""

from minikd.tools.exercises.solutions.nll import nll
from minikd.tools.exercises.solutions.t_squared import soft_term


def distillation_loss(z, v, y, lam, T, form):
    """interpolate: (1 − λ)·CE + λ·T²·KL;  additive: CE + λ·T²·KL.  The gradient is the same mix of
    (softmax(z) − onehot(y))/N and T·(q_T − p_T)/N."""
    ce, ce_grad = nll(z, y)  # the hard-label term at T = 1
    soft, soft_grad = soft_term(z, v, T)
    hard_weight = 1.0 - lam if form == "interpolate" else 1.0
    return hard_weight * ce + lam * soft, hard_weight * ce_grad + lam * soft_grad
