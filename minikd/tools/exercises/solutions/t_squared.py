"""Reference solution: the soft term T²·KL(p_T ‖ q_T) and its gradient."""

from minikd.tools.exercises.solutions.kl import kl


def soft_term(z, v, T):
    """L = T²·KL(p_T ‖ q_T) (mean over rows);  dL/dz = T·(q_T − p_T) / N."""
    scale = T * T  # cancels the 1/T² by which the KL gradient shrinks as T grows
    loss, grad = kl(z, v, T)
    return scale * loss, scale * grad
