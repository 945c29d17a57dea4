"""Reference solution: the backward of one head of causal self-attention."""

import math

from minikd.engine import backend


def causal_attention_weights(q, k):
    """A = softmax(q kᵀ/√D) over keys, with key j > query t masked out: (..., S, S), rows sum to 1."""
    xp = backend.xp()
    S, D = q.shape[-2], q.shape[-1]
    scores = q @ xp.matrix_transpose(k) / math.sqrt(D)  # (..., S, S)
    position = xp.arange(S, device=backend.device())  # (S,)
    future = position[None, :] > position[:, None]  # (S, S): key j after query t
    scores = xp.where(future, -xp.inf, scores)
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))  # the diagonal is kept, so the max is finite
    return e / xp.sum(e, axis=-1, keepdims=True)


def attention_backward(q, k, v, g):
    """y = A v, A = causal_softmax(s), s = q kᵀ/√D:
    dv = Aᵀ g;  dA = g vᵀ;  ds = A ⊙ (dA − Σ_j dA·A);  dq = ds k/√D;  dk = dsᵀ q/√D."""
    xp = backend.xp()
    A = causal_attention_weights(q, k)  # (..., S, S)
    dv = xp.matrix_transpose(A) @ g  # (..., S, D)
    dA = g @ xp.matrix_transpose(v)  # (..., S, S)
    ds = A * (dA - xp.sum(dA * A, axis=-1, keepdims=True)) / math.sqrt(q.shape[-1])  # masked entries: A = 0
    return ds @ k, xp.matrix_transpose(ds) @ q, dv
