"""# The T² factor

Write `soft_term(z, v, T)`: the soft term of distillation, T²·KL(p_T ‖ q_T) averaged over rows, and
its gradient with respect to the student's logits.

- `z`, `v`: the student's and the teacher's logits, (N, V) float64; `T`: a float > 0.
- Return `(loss, grad)`: loss a scalar, grad of shape (N, V).

The maths: L = T²·(1/N) Σ_r KL(p_T,r ‖ q_T,r);  dL/dz = T·(q_T − p_T) / N.
For large T (T much larger than the logits' spread), q_T − p_T shrinks like 1/T, so KL's gradient
falls like 1/T²; the T² then keeps the soft term's pull on the student roughly constant as T grows
(Hinton et al., 2015). At small T that approximation fails and T² simply shrinks the soft term.

Hint: start from your `kl` (copy it in, or `from kl import kl` when kl.py sits beside this file) and
multiply both its value and its gradient by the scale T².
"""

from minikd.engine import backend


def soft_term(z, v, T):
    xp = backend.xp()
    raise NotImplementedError("soft_term(z, v, T): return (T² · KL, its gradient)")
