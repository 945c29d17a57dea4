"""# KL(p_T ‖ q_T) and its gradient

Write `kl(z, v, T)`: the KL divergence from the teacher's softened distribution to the student's,
averaged over rows, and its gradient with respect to the student's logits.

- `z`: the student's logits (N, V); `v`: the teacher's logits (N, V); `T`: a float > 0. float64.
- Return `(loss, grad)`: loss a scalar, grad of shape (N, V) (the teacher gets no gradient).

The maths: p_T = softmax(v / T), q_T = softmax(z / T);
L = (1/N) Σ_r Σ_j p_T (log p_T − log q_T);  dL/dz = (q_T − p_T) / (T·N).

Hint: the teacher's distribution comes first: KL(p‖q) is not KL(q‖p). Compute it from
log-probabilities (no log 0); the 1/T in the gradient is the chain rule through z / T.
"""

from minikd.engine import backend


def kl(z, v, T):
    xp = backend.xp()
    raise NotImplementedError("kl(z, v, T): return (loss, grad)")
