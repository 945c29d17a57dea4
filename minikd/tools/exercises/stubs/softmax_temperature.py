"""# Softmax with temperature

Write `softmax(z, T)`: the distribution q = softmax(z / T) along the last axis.

- `z`: logits, an array of shape (..., V) (any number of leading axes), float32 or float64.
- `T`: the temperature, a float > 0. Return an array of z's shape and dtype; each row sums to 1.

The maths: q_j = exp(z_j / T) / Σ_k exp(z_k / T). T > 1 flattens q toward uniform, T < 1 sharpens it
toward the one-hot of argmax z.

Hint: softmax is unchanged when a constant is subtracted from every logit of a row; subtract
`xp.max(z, axis=-1, keepdims=True)` first so that no exp overflows at logits of ±1e4 or T = 0.001.
Use the array module's functions (`xp = backend.xp()`; `xp.exp`, `xp.sum(..., axis=-1, keepdims=True)`).
"""

from minikd.engine import backend


def softmax(z, T):
    xp = backend.xp()
    raise NotImplementedError("softmax(z, T): write q = softmax(z / T) along the last axis")
