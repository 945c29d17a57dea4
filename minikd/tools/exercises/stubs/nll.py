"""# The negative log-likelihood and its gradient

Write `nll(z, y)`: the mean negative log-likelihood of the targets, and its gradient with respect
to the logits.

- `z`: logits of shape (N, V), float64; `y`: integer targets of shape (N,), each in [0, V).
- Return the tuple `(loss, grad)`: loss a scalar (0-d array or float), grad of shape (N, V).

The maths: L = −(1/N) Σ_r log softmax(z_r)[y_r]; dL/dz = (softmax(z) − onehot(y)) / N.

Hint: compute log softmax stably (exercise `log_softmax`); a one-hot matrix is
`xp.astype(xp.arange(V, device=backend.device()) == y[:, None], z.dtype)` (arrays are made on the
backend's device). Do not forget the 1/N in both the loss and the gradient.
"""

from minikd.engine import backend


def nll(z, y):
    xp = backend.xp()
    raise NotImplementedError("nll(z, y): return (loss, grad)")
