"""# One AdamW step

Write `adamw_step(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay)`: one update of AdamW
(Loshchilov & Hutter) for one parameter array.

- `theta`, `grad`, `m`, `v`: arrays of one shape (the parameter, its gradient, the first and second
  moments before this step); `t`: the step number, 1 for the first step; the rest floats.
- Return the new `(theta, m, v)`.

The maths: m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  m̂ = m/(1 − β₁ᵗ);  v̂ = v/(1 − β₂ᵗ);
θ ← θ − lr·(m̂/(√v̂ + ε) + wd·θ).

Hint: the decay is *decoupled*: it acts on θ directly and never enters m or v (adding wd·θ to the
gradient is Adam with L2, a different optimizer). The bias correction makes the first step move
each coordinate by about lr. ε goes outside the square root.
"""

from minikd.engine import backend


def adamw_step(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    xp = backend.xp()
    raise NotImplementedError("adamw_step(...): return (theta, m, v)")
