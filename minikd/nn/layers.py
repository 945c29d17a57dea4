"""The transformer's layers as differentiable ops, each forward beside its hand-written backward.

linear, embedding, layer_norm, gelu (tanh form), causal multi-head self-attention and dropout.
Each backward here is the plain closed form; ``fused_layers.py`` holds the in-place NumPy variants
that run instead under the NumPy backend (``backend.fast_paths``), tested equal.
Shape legend: B batch, S sequence, C channels, V vocabulary, H heads, D = C / H per head.
"""

import math

from minikd.engine import backend
from minikd.engine.autograd import Function, data_of
from minikd.nn import fused_layers


# ---- linear ------------------------------------------------------------------------------------
class Linear(Function):
    def forward(self, x, weight, bias=None):
        xp = backend.xp()
        self.x2, self.weight = xp.reshape(x, (-1, x.shape[-1])), weight  # (N, C_in) rows; weight (C_out, C_in)
        y = self.x2 @ xp.matrix_transpose(weight)  # (N, C_out): one 2-D product for every leading index at once
        if bias is not None:
            y = y + bias
        return xp.reshape(y, x.shape[:-1] + (weight.shape[0],))  # (..., C_out)

    def backward(self, g):
        """y = x Wᵀ + b: dx = g W, dW = Σ_rows gᵀ x, db = Σ_rows g."""
        xp = backend.xp()
        g2 = xp.reshape(g, (-1, g.shape[-1]))  # (N, C_out)
        dx = xp.reshape(g2 @ self.weight, g.shape[:-1] + (self.weight.shape[1],))  # (..., C_in)
        return dx, xp.matrix_transpose(g2) @ self.x2, xp.sum(g2, axis=0)


def linear(x, weight, bias=None):
    """x Wᵀ + b, with ``weight`` of shape (C_out, C_in)."""
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)


# ---- embedding -----------------------------------------------------------------------------------
class Embedding(Function):
    def forward(self, weight, idx):
        xp = backend.xp()
        self.flat_idx, self.shape = xp.reshape(idx, (-1,)), weight.shape
        rows = xp.take(weight, self.flat_idx, axis=0)  # (B·S, C): row idx[b, s] of the table
        return xp.reshape(rows, idx.shape + (weight.shape[1],))  # (B, S, C)

    def backward(self, g):
        """y[b, s] = W[idx[b, s]]: dW[v] = Σ_{b,s: idx[b,s]=v} g[b, s] (a scatter-add; repeats add up)."""
        xp = backend.xp()
        grad = xp.zeros(self.shape, dtype=g.dtype, device=backend.device())  # (V, C)
        return (backend.scatter_add(grad, self.flat_idx, xp.reshape(g, (-1, self.shape[1]))),)


def embedding(idx, weight):
    """Rows of ``weight`` (V, C) picked by the integer array ``idx``: shape idx.shape + (C,)."""
    return Embedding.apply(weight, idx=data_of(idx))


# ---- layer norm ----------------------------------------------------------------------------------
class LayerNorm(Function):
    def forward(self, x, gamma, beta, eps=1e-5):
        xp = backend.xp()
        centred = x - xp.mean(x, axis=-1, keepdims=True)  # x − μ, (..., C)
        self.rstd = 1.0 / xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + eps)  # 1/σ, (..., 1)
        self.xhat = centred * self.rstd  # (..., C): zero mean, unit variance per row
        self.gamma = gamma
        return self.xhat * gamma + beta

    def backward(self, g):
        """y = x̂·γ + β, x̂ = (x − μ)/σ: with ĝ = g·γ, dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ;
        dγ = Σ_rows g·x̂, dβ = Σ_rows g.

        (x̂ depends on x through x − μ, whose Jacobian subtracts the mean, and through 1/σ, whose
        derivative is −x̂/(Cσ) per entry: together the two mean terms.)
        """
        if backend.fast_paths_enabled():
            return fused_layers.layer_norm_backward(g, self.xhat, self.rstd, self.gamma)
        xp = backend.xp()
        rows = tuple(range(g.ndim - 1))
        ghat = g * self.gamma  # (..., C)
        mean_g = xp.mean(ghat, axis=-1, keepdims=True)  # (..., 1)
        mean_gx = xp.mean(ghat * self.xhat, axis=-1, keepdims=True)  # (..., 1)
        dx = (ghat - mean_g - self.xhat * mean_gx) * self.rstd
        return dx, xp.sum(g * self.xhat, axis=rows), xp.sum(g, axis=rows)


def layer_norm(x, gamma, beta, eps=1e-5):
    """Normalise the last axis to zero mean and unit variance, then scale by γ and shift by β."""
    return LayerNorm.apply(x, gamma, beta, eps=eps)


# ---- GELU ---------------------------------------------------------------------------------------
GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


class GELU(Function):
    def forward(self, x):
        self.x = x
        self.t = backend.xp().tanh(GELU_C * (x + GELU_A * x * x * x))  # t = tanh u; x·x·x: NumPy's power is slow
        return 0.5 * x * (1.0 + self.t)

    def backward(self, g):
        """y = ½x(1 + tanh u), u = c(x + a x³): dy/dx = ½(1 + t) + ½x(1 − t²)·c(1 + 3a x²)."""
        if backend.fast_paths_enabled():
            return fused_layers.gelu_backward(g, self.x, self.t)
        x, t = self.x, self.t
        dy_dx = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x)
        return (g * dy_dx,)


def gelu(x):
    """GELU in its tanh form (as GPT-2): ½x(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    return GELU.apply(x)


# ---- causal multi-head self-attention ---------------------------------------------------------------
def causal_mask(S):
    """(S, S) booleans, true where key j comes after query t (j > t): the entries attention may not see."""
    xp = backend.xp()
    return xp.triu(xp.ones((S, S), dtype=xp.bool, device=backend.device()), k=1)


def causal_softmax(scores):
    """Softmax over the last axis of (..., S, S) scores with every key after its query masked out.

    Row t is a distribution over positions 0..t: entries above the diagonal are exactly 0.
    """
    xp = backend.xp()
    masked = xp.where(causal_mask(scores.shape[-1]), -math.inf, scores)
    unnormalised = xp.exp(masked - xp.max(masked, axis=-1, keepdims=True))  # the diagonal is never masked
    return unnormalised / xp.sum(unnormalised, axis=-1, keepdims=True)


class CausalSelfAttention(Function):
    def forward(self, qkv, n_head):
        xp = backend.xp()
        B, S, C3 = qkv.shape
        D = C3 // 3 // n_head
        heads = xp.permute_dims(xp.reshape(qkv, (B, S, 3, n_head, D)), (2, 0, 3, 1, 4))  # (3, B, H, S, D)
        self.q, self.k, self.v = heads[0, ...], heads[1, ...], heads[2, ...]
        self.scale = 1.0 / math.sqrt(D)
        scores = (self.q @ xp.matrix_transpose(self.k)) * self.scale  # s = q kᵀ/√D, (B, H, S, S)
        softmax = fused_layers.causal_softmax if backend.fast_paths_enabled() else causal_softmax
        self.att = softmax(scores)  # A = causal_softmax(s), (B, H, S, S)
        y = self.att @ self.v  # y = A v, (B, H, S, D)
        return xp.reshape(xp.permute_dims(y, (0, 2, 1, 3)), (B, S, C3 // 3))  # heads side by side: (B, S, C)

    def backward(self, g):
        """The forward, line by line in reverse (per batch and head; g·h sums over every entry):

        y = A v          →  dv = Aᵀ gy,  dA = gy vᵀ                     (a matrix product's backward)
        A = softmax(s)   →  ds_tj = A_tj (dA_tj − Σ_k dA_tk A_tk)        (row t's softmax Jacobian,
                             diag(A_t) − A_t A_tᵀ; masked entries have A = 0, so they get ds = 0)
        s = q kᵀ/√D      →  dq = ds k/√D,  dk = dsᵀ q/√D
        then dq, dk, dv go back to their places in qkv (the inverse of the head split).
        """
        xp = backend.xp()
        B, H, S, D = self.q.shape
        gy = xp.permute_dims(xp.reshape(g, (B, S, H, D)), (0, 2, 1, 3))  # (B, H, S, D): undo the head merge
        dv = xp.matrix_transpose(self.att) @ gy  # (B, H, S, D)
        dA = gy @ xp.matrix_transpose(self.v)  # (B, H, S, S)
        if backend.fast_paths_enabled():
            ds = fused_layers.softmax_backward_scaled(dA, self.att, self.scale)
        else:
            ds = self.att * (dA - xp.sum(dA * self.att, axis=-1, keepdims=True)) * self.scale  # ds/√D
        dq = ds @ self.k  # (B, H, S, D)
        dk = xp.matrix_transpose(ds) @ self.q  # (B, H, S, D)
        dqkv = xp.stack([dq, dk, dv])  # (3, B, H, S, D): undo the split of qkv
        return (xp.reshape(xp.permute_dims(dqkv, (1, 3, 0, 2, 4)), (B, S, 3 * H * D)),)


def causal_self_attention(qkv, n_head):
    """Multi-head attention where position t attends to positions 0..t only.

    ``qkv`` (B, S, 3C) holds queries, keys and values side by side; the result is (B, S, C).
    """
    return CausalSelfAttention.apply(qkv, n_head=n_head)


# ---- dropout -------------------------------------------------------------------------------------
class Dropout(Function):
    def forward(self, x, p, seed, keys):
        keep = backend.rng(seed, *keys).random(x.shape) >= p
        self.scale = backend.xp().astype(keep, x.dtype) / (1.0 - p)  # (…): 0 where dropped, 1/(1 − p) where kept
        return x * self.scale

    def backward(self, g):
        """y = x·m/(1 − p) with a fixed 0/1 mask m: dx = g·m/(1 − p)."""
        return (g * self.scale,)


def dropout(x, p, seed, keys=()):
    """Zero each entry with probability p and scale the rest by 1/(1 − p); the mask comes from (seed, keys)."""
    return Dropout.apply(x, p=p, seed=seed, keys=tuple(keys))
