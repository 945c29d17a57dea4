"""Reference solution: the backward of LayerNorm over the last axis."""

from minikd.engine import backend


def layer_norm_backward(g, x, gamma, eps):
    """y = x̂·γ + β, x̂ = (x − μ)/σ, σ = √(var + ε): with ĝ = g·γ,
    dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ;  dγ = Σ_rows g·x̂;  dβ = Σ_rows g."""
    xp = backend.xp()
    rows = tuple(range(g.ndim - 1))  # every axis but the last
    centred = x - xp.mean(x, axis=-1, keepdims=True)  # (..., C)
    sigma = xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + eps)  # (..., 1)
    xhat = centred / sigma
    ghat = g * gamma
    dx = (ghat - xp.mean(ghat, axis=-1, keepdims=True) - xhat * xp.mean(ghat * xhat, axis=-1, keepdims=True)) / sigma
    return dx, xp.sum(g * xhat, axis=rows), xp.sum(g, axis=rows)
