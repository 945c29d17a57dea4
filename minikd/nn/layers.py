"""The transformer's layers as differentiable ops, each forward beside its hand-written backward.

linear, embedding, layer_norm, gelu (tanh form), causal multi-head self-attention and dropout.
Shape legend: B batch, S sequence, C channels, V vocabulary, H heads, D = C / H per head.
"""

import math

from minikd.engine import backend
from minikd.engine.autograd import Function, data_of


# ---- linear ------------------------------------------------------------------------------------
class Linear(Function):
    def forward(self, x, weight, bias=None):
        self.x2, self.weight = x.reshape(-1, x.shape[-1]), weight  # (N, C_in) rows; weight (C_out, C_in)
        y = self.x2 @ weight.T  # (N, C_out): one 2-D matrix product for every leading index at once
        if bias is not None:
            y += bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))  # (..., C_out)

    def backward(self, g):
        """y = x Wᵀ + b: dx = g W, dW = Σ_rows gᵀ x, db = Σ_rows g."""
        g2 = g.reshape(-1, g.shape[-1])  # (N, C_out)
        dx = (g2 @ self.weight).reshape(g.shape[:-1] + (self.weight.shape[1],))  # (..., C_in)
        return dx, g2.T @ self.x2, g2.sum(axis=0)


def linear(x, weight, bias=None):
    """x Wᵀ + b, with ``weight`` of shape (C_out, C_in)."""
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)


# ---- embedding -----------------------------------------------------------------------------------
class Embedding(Function):
    def forward(self, weight, idx):
        self.idx, self.shape = idx, weight.shape
        return weight[idx]  # (B, S, C): row idx[b, s] of the table

    def backward(self, g):
        """y[b, s] = W[idx[b, s]]: dW[v] = Σ_{b,s: idx[b,s]=v} g[b, s] (a scatter-add; repeats add up)."""
        grad = backend.xp().zeros(self.shape, dtype=g.dtype)  # (V, C)
        backend.xp().add.at(grad, self.idx.reshape(-1), g.reshape(-1, self.shape[1]))
        return (grad,)


def embedding(idx, weight):
    """Rows of ``weight`` (V, C) picked by the integer array ``idx``: shape idx.shape + (C,)."""
    return Embedding.apply(weight, idx=data_of(idx))


# ---- layer norm ----------------------------------------------------------------------------------
class LayerNorm(Function):
    def forward(self, x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=-1, keepdims=True)  # (..., 1)
        centred = x - mu
        self.rstd = 1.0 / backend.xp().sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
        self.xhat = centred * self.rstd  # (..., C): zero mean, unit variance per row
        self.gamma = gamma
        return self.xhat * gamma + beta

    def backward(self, g):
        """y = x̂·γ + β, x̂ = (x − μ)/σ: with ĝ = g·γ, dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ;
        dγ = Σ_rows g·x̂, dβ = Σ_rows g."""
        xp = backend.xp()
        rows = tuple(range(g.ndim - 1))
        work = xp.multiply(g, self.xhat)  # in-place steps below: fresh temporaries cost more than the math
        dgamma = work.sum(axis=rows)
        dx = g * self.gamma  # ĝ
        xp.multiply(dx, self.xhat, out=work)  # ĝ·x̂
        mean_gx = work.mean(axis=-1, keepdims=True)
        dx -= dx.mean(axis=-1, keepdims=True)  # ĝ − mean(ĝ)
        xp.multiply(self.xhat, mean_gx, out=work)
        dx -= work  # − x̂·mean(ĝ·x̂)
        dx *= self.rstd
        return dx, dgamma, g.sum(axis=rows)


def layer_norm(x, gamma, beta, eps=1e-5):
    """Normalise the last axis to zero mean and unit variance, then scale by γ and shift by β."""
    return LayerNorm.apply(x, gamma, beta, eps=eps)


# ---- GELU ---------------------------------------------------------------------------------------
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


class GELU(Function):
    def forward(self, x):
        self.x = x
        self.t = backend.xp().tanh(_GELU_C * (x + _GELU_A * x * x * x))  # x·x·x: NumPy's power is slow
        return 0.5 * x * (1.0 + self.t)

    def backward(self, g):
        """y = ½x(1 + tanh u), u = c(x + a x³): dy/dx = ½(1 + t) + ½x(1 − t²)·c(1 + 3a x²)."""
        xp = backend.xp()
        x, t = self.x, self.t
        d = x * x  # in place from here: each fresh temporary of this size costs more than its arithmetic
        d *= 1.5 * _GELU_A * _GELU_C
        d += 0.5 * _GELU_C  # ½c(1 + 3a x²)
        d *= x
        one_minus_t2 = xp.multiply(t, t)
        xp.subtract(1.0, one_minus_t2, out=one_minus_t2)
        d *= one_minus_t2  # ½x(1 − t²)·c(1 + 3a x²)
        d += 0.5
        d += xp.multiply(t, 0.5, out=one_minus_t2)  # + ½(1 + t)
        d *= g
        return (d,)


def gelu(x):
    """GELU in its tanh form (as GPT-2): ½x(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    return GELU.apply(x)


# ---- causal multi-head self-attention ---------------------------------------------------------------
def causal_softmax(scores):
    """Softmax over the last axis of (..., S, S) scores with every key after its query masked out.

    Row t is a distribution over positions 0..t: entries above the diagonal are exactly 0.
    """
    xp = backend.xp()
    S = scores.shape[-1]
    future = xp.triu(xp.ones((S, S), dtype=bool), k=1)  # (S, S): key j > query t
    e = xp.where(future, -xp.inf, scores)
    e -= e.max(axis=-1, keepdims=True)  # the diagonal is never masked, so the max is finite
    xp.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


class CausalSelfAttention(Function):
    def forward(self, qkv, n_head):
        B, S, C3 = qkv.shape
        C = C3 // 3
        D = C // n_head
        heads = qkv.reshape(B, S, 3, n_head, D).transpose(2, 0, 3, 1, 4)  # (3, B, H, S, D)
        self.q, self.k, self.v = heads[0], heads[1], heads[2]
        self.scale = 1.0 / math.sqrt(D)
        self.att = causal_softmax((self.q @ self.k.transpose(0, 1, 3, 2)) * self.scale)  # (B, H, S, S)
        y = self.att @ self.v  # (B, H, S, D)
        return y.transpose(0, 2, 1, 3).reshape(B, S, C)  # heads side by side: (B, S, C)

    def backward(self, g):
        """y = A v with A = causal_softmax(q kᵀ/√D):
        dv = Aᵀ gy, dA = gy vᵀ, ds = A ⊙ (dA − Σ_j dA·A), dq = ds k/√D, dk = dsᵀ q/√D."""
        B, H, S, D = self.q.shape
        gy = g.reshape(B, S, H, D).transpose(0, 2, 1, 3)  # (B, H, S, D): undo the head merge
        dv = self.att.transpose(0, 1, 3, 2) @ gy  # (B, H, S, D)
        dA = gy @ self.v.transpose(0, 1, 3, 2)  # (B, H, S, S)
        ds = dA  # softmax backward, in place: A ⊙ (dA − Σ_j dA·A); masked entries have A = 0
        ds -= (dA * self.att).sum(axis=-1, keepdims=True)
        ds *= self.att
        ds *= self.scale
        dq = ds @ self.k  # (B, H, S, D)
        dk = ds.transpose(0, 1, 3, 2) @ self.q  # (B, H, S, D)
        dqkv = backend.xp().stack([dq, dk, dv])  # (3, B, H, S, D): undo the split of qkv
        return (dqkv.transpose(1, 3, 0, 2, 4).reshape(B, S, 3 * H * D),)


def causal_self_attention(qkv, n_head):
    """Multi-head attention where position t attends to positions 0..t only.

    ``qkv`` (B, S, 3C) holds queries, keys and values side by side; the result is (B, S, C).
    """
    return CausalSelfAttention.apply(qkv, n_head=n_head)


# ---- dropout -------------------------------------------------------------------------------------
class Dropout(Function):
    def forward(self, x, p, seed, keys):
        keep = backend.rng(seed, *keys).random(x.shape) >= p
        self.scale = keep.astype(x.dtype) / (1.0 - p)  # (…): 0 where dropped, 1/(1 − p) where kept
        return x * self.scale

    def backward(self, g):
        """y = x·m/(1 − p) with a fixed 0/1 mask m: dx = g·m/(1 − p)."""
        return (g * self.scale,)


def dropout(x, p, seed, keys=()):
    """Zero each entry with probability p and scale the rest by 1/(1 − p); the mask comes from (seed, keys)."""
    return Dropout.apply(x, p=p, seed=seed, keys=tuple(keys))
