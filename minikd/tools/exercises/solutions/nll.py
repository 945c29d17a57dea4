"""Reference solution: the negative log-likelihood of the targets and its gradient."""

from minikd.engine import backend
from minikd.tools.exercises.solutions.log_softmax import log_softmax


def nll(z, y):
    """L = −(1/N) Σ_r log softmax(z_r)[y_r];  dL/dz = (softmax(z) − onehot(y)) / N."""
    xp = backend.xp()
    N, V = z.shape
    log_q = log_softmax(z, 1.0)  # (N, V)
    onehot = xp.astype(xp.arange(V, device=backend.device()) == y[:, None], z.dtype)  # (N, V)
    loss = -xp.sum(log_q * onehot) / N
    return loss, (xp.exp(log_q) - onehot) / N
