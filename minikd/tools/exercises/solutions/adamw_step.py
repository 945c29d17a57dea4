"""Reference solution: one step of AdamW."""

from minikd.engine import backend


def adamw_step(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ);
    θ ← θ − lr·(m̂/(√v̂ + ε) + wd·θ)  (the decay is decoupled: it never enters m or v)."""
    xp = backend.xp()
    m = beta1 * m + (1.0 - beta1) * grad
    v = beta2 * v + (1.0 - beta2) * grad * grad
    m_hat = m / (1.0 - beta1**t)
    v_hat = v / (1.0 - beta2**t)
    theta = theta - lr * (m_hat / (xp.sqrt(v_hat) + eps) + weight_decay * theta)
    return theta, m, v
