"""The combined loss in its plain closed form: Σ_r a_r·CE(z_r, y_r) + b_r·D(p_T,r ‖ q_T,r) and its gradient.

This is the version to read: whole arrays, functions of the array API standard, one line per
term. It runs on every backend; ``fused.py`` computes the same numbers in chunks (NumPy only).
"""

from minikd.engine import backend
from minikd.losses.divergences import softmax_of_shifted, softmax_parts


def one_hot(targets, num_classes, dtype):
    """(N,) integer targets as an (N, V) array with 1 at [r, y_r] and 0 elsewhere."""
    xp = backend.xp()
    classes = xp.arange(num_classes, device=backend.device())  # (V,)
    return xp.astype(targets[:, None] == classes[None, :], dtype)


def weighted_loss_and_grad(z, v, y, a, b, T, divergence, beta, with_grad):
    """``(L, dL/dz)`` for (N, V) student logits z and teacher logits v (or None), targets y (or None).

    CE(z, y) = −log softmax(z)[y]            dCE/dz = softmax(z) − onehot(y)
    D(p_T ‖ q_T), q_T = softmax(z/T)          dD/dz = (1/T)·dD/ds, s = z/T  (forward KL: q_T − p_T)
    a, b are the per-row weights (N,) of the two terms. ``dL/dz`` is None unless ``with_grad``.
    """
    xp = backend.xp()
    shifted = z - xp.max(z, axis=-1, keepdims=True)  # (N, V), every entry <= 0
    loss = xp.zeros((), dtype=z.dtype, device=backend.device())
    grad = xp.zeros_like(z) if with_grad else None
    if y is not None:  # cross-entropy at T = 1
        probs, log_probs = softmax_of_shifted(shifted)  # (N, V)
        picked = xp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]  # (N,): log softmax(z)[y]
        loss = loss - xp.sum(a * picked)
        if with_grad:
            grad = grad + a[:, None] * (probs - one_hot(y, z.shape[-1], z.dtype))
    if v is not None:  # the divergence at temperature T
        q, log_q = softmax_of_shifted(shifted, T)
        p, log_p = softmax_parts(v, T)
        values, dD_ds = divergence(p, log_p, q, log_q, beta, with_grad=with_grad)  # (N,), (N, V)
        loss = loss + xp.sum(b * values)
        if with_grad:
            grad = grad + (b / T)[:, None] * dD_ds  # chain rule through s = z/T
    return loss, grad
