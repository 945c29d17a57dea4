"""# The combined objective, in both forms, and its gradient

Write `distillation_loss(z, v, y, lam, T, form)`: the knowledge-distillation objective and its
gradient with respect to the student's logits.

- `z`, `v`: the student's and the teacher's logits (N, V) float64; `y`: targets (N,);
  `lam`: λ, a float (in [0, 1] for "interpolate", >= 0 for "additive"); `T`: a float > 0;
  `form`: `"interpolate"` or `"additive"`.
- Return `(loss, grad)`: loss a scalar, grad of shape (N, V).

The maths, with CE = NLL of softmax(z) at T = 1 and KD = T²·KL(p_T ‖ q_T), both means over rows:
- interpolate: L = (1 − λ)·CE + λ·KD;
- additive: L = CE + λ·KD.
The gradient is the same mix of (softmax(z) − onehot(y))/N and T·(q_T − p_T)/N.

Hint: reuse your `nll` and `soft_term` (copy them in, or import them from the files beside this
one). The hard-label term uses T = 1, not T; (1 − λ) weighs the labels and λ the teacher; the
additive form has no (1 − λ).
"""

from minikd.engine import backend


def distillation_loss(z, v, y, lam, T, form):
    xp = backend.xp()
    raise NotImplementedError("distillation_loss(z, v, y, lam, T, form): return (loss, grad)")
