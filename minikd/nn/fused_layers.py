"""The layers' fast paths (NumPy only): the same backward formulas as ``layers.py``, computed in place.

Each fresh temporary of an activation's size costs page faults and memory traffic that take longer
than its arithmetic, so these reuse a few buffers with ``out=``. ``layers.py`` calls them under
the NumPy backend when ``backend.fast_paths`` is on; tests/test_fast_paths.py checks they equal
the plain forms there.
"""

from minikd.engine import backend

GELU_C, GELU_A = 0.7978845608028654, 0.044715  # √(2/π) and a, as in layers.py (checked by a test)


def layer_norm_backward(g, xhat, rstd, gamma):
    """dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))·rstd with ĝ = g·γ;  dγ = Σ_rows g·x̂, dβ = Σ_rows g."""
    np = backend.host_xp()
    rows = tuple(range(g.ndim - 1))
    work = np.multiply(g, xhat)
    dgamma = work.sum(axis=rows)
    dx = g * gamma  # ĝ
    np.multiply(dx, xhat, out=work)  # ĝ·x̂
    mean_gx = work.mean(axis=-1, keepdims=True)
    dx -= dx.mean(axis=-1, keepdims=True)  # ĝ − mean(ĝ)
    np.multiply(xhat, mean_gx, out=work)
    dx -= work  # − x̂·mean(ĝ·x̂)
    dx *= rstd
    return dx, dgamma, g.sum(axis=rows)


def gelu_backward(g, x, t):
    """g·dy/dx with dy/dx = ½(1 + t) + ½x(1 − t²)·c(1 + 3a x²), t = tanh(c(x + a x³))."""
    np = backend.host_xp()
    dy_dx = x * x
    dy_dx *= 1.5 * GELU_A * GELU_C
    dy_dx += 0.5 * GELU_C  # ½c(1 + 3a x²)
    dy_dx *= x
    one_minus_t2 = np.multiply(t, t)
    np.subtract(1.0, one_minus_t2, out=one_minus_t2)
    dy_dx *= one_minus_t2  # ½x(1 − t²)·c(1 + 3a x²)
    dy_dx += 0.5
    dy_dx += np.multiply(t, 0.5, out=one_minus_t2)  # + ½(1 + t)
    dy_dx *= g
    return (dy_dx,)


def causal_softmax(scores):
    """``layers.causal_softmax`` computed in one buffer."""
    np = backend.host_xp()
    S = scores.shape[-1]
    weights = np.where(np.triu(np.ones((S, S), dtype=bool), k=1), -np.inf, scores)
    weights -= weights.max(axis=-1, keepdims=True)
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights


def softmax_backward_scaled(dA, att, scale):
    """A ⊙ (dA − Σ_j dA·A)·scale, written over dA (which the caller no longer needs)."""
    dA -= (dA * att).sum(axis=-1, keepdims=True)
    dA *= att
    dA *= scale
    return dA
