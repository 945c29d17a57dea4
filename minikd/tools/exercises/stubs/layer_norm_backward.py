"""# LayerNorm backward

Write `layer_norm_backward(g, x, gamma, eps)`: the gradients of LayerNorm over the last axis.

- `x`: the input (..., C); `gamma`: the gain (C,); `eps`: a float; `g` = dL/dy, shape of x. float64.
- Return `(dx, dgamma, dbeta)` with shapes x.shape, (C,), (C,).

The forward: μ = mean(x), σ = √(mean((x − μ)²) + ε) per row; x̂ = (x − μ)/σ; y = x̂·γ + β.
The maths, with ĝ = g·γ and means over the last axis:
dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ;  dγ = Σ_rows g·x̂;  dβ = Σ_rows g.

Hint: recompute μ, σ and x̂ from x. The two subtracted means come from μ and σ depending on every
entry of the row. dγ and dβ sum over every axis but the last (`axis=tuple(range(g.ndim - 1))`).
"""

from minikd.engine import backend


def layer_norm_backward(g, x, gamma, eps):
    xp = backend.xp()
    raise NotImplementedError("layer_norm_backward(g, x, gamma, eps): return (dx, dgamma, dbeta)")
