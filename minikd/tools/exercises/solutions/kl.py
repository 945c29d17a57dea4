"""Reference solution: KL(p_T ‖ q_T) between teacher and student, and its gradient."""

from minikd.engine import backend
from minikd.tools.exercises.solutions.log_softmax import log_softmax


def kl(z, v, T):
    """L = (1/N) Σ_r Σ_j p_T (log p_T − log q_T), p_T = softmax(v/T), q_T = softmax(z/T);
    dL/dz = (q_T − p_T) / (T·N)."""
    xp = backend.xp()
    N = z.shape[0]
    log_p, log_q = log_softmax(v, T), log_softmax(z, T)  # (N, V) each
    p = xp.exp(log_p)
    loss = xp.sum(p * (log_p - log_q)) / N
    return loss, (xp.exp(log_q) - p) / (T * N)
