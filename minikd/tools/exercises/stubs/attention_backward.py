"""# Attention backward

Write `attention_backward(q, k, v, g)`: the gradients of one head of causal self-attention.

- `q`, `k`, `v`: queries, keys, values of shape (..., S, D); `g` = dL/dy of shape (..., S, D). float64.
- Return `(dq, dk, dv)`, each of shape (..., S, D).

The forward: s = q kᵀ/√D (..., S, S); A = softmax of s over keys, with every key j > t (after the
query t) masked out (set to −inf before the softmax); y = A v.
The maths: dv = Aᵀ g;  dA = g vᵀ;  ds = A ⊙ (dA − Σ_j dA·A) (softmax backward, per row);
dq = ds k/√D;  dk = dsᵀ q/√D.

Hint: recompute A first. `xp.matrix_transpose(a)` swaps the last two axes; with
`position = xp.arange(S, device=backend.device())` the future keys are
`position[None, :] > position[:, None]` (strictly above the diagonal: a query sees itself).
Check which of ds and dsᵀ each gradient needs: queries are the rows of s, keys its columns.
"""

from minikd.engine import backend


def attention_backward(q, k, v, g):
    xp = backend.xp()
    raise NotImplementedError("attention_backward(q, k, v, g): return (dq, dk, dv)")
