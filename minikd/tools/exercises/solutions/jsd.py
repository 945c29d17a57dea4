"""Reference solution: the generalised Jensen-Shannon divergence."""

from minikd.engine import backend


def _kl_rows(a, b):
    """Σ_j a_j log(a_j / b_j) per row, with 0·log 0 = 0 (b > 0 wherever a > 0)."""
    xp = backend.xp()
    positive = a > 0
    safe_a = xp.where(positive, a, 1.0)  # log 1 = 0 where a = 0, so no log 0 is taken
    safe_b = xp.where(positive, b, 1.0)
    return xp.sum(xp.where(positive, a * (xp.log(safe_a) - xp.log(safe_b)), 0.0), axis=-1)


def jsd(p, q, beta):
    """JSD_β(p, q) = β·KL(p ‖ M) + (1 − β)·KL(q ‖ M), M = β·p + (1 − β)·q, one value per row."""
    m = beta * p + (1.0 - beta) * q  # (..., V): > 0 wherever p or q is
    return beta * _kl_rows(p, m) + (1.0 - beta) * _kl_rows(q, m)
