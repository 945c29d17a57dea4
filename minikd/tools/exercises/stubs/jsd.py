"""# The generalised Jensen-Shannon divergence

Write `jsd(p, q, beta)`: the generalised JSD between two distributions, one value per row.

- `p`, `q`: probabilities of shape (..., V) (each row sums to 1; entries may be exactly 0), float64;
  `beta`: β, a float in (0, 1).
- Return an array of shape p.shape[:-1] (one value per row, not their mean).

The maths: M = β·p + (1 − β)·q;  JSD_β(p, q) = β·KL(p ‖ M) + (1 − β)·KL(q ‖ M), KL(a ‖ b) = Σ_j a_j log(a_j / b_j).
It lies between 0 (p = q) and the binary entropy H(β) = −β log β − (1 − β) log(1 − β) (disjoint supports);
at β = ½ that is log 2. And JSD_β(p, q) = JSD_(1−β)(q, p).

Hint: the term of an entry with a_j = 0 is 0 (0·log 0 = 0), but `0 * log(0)` is NaN: use
`xp.where(a > 0, ..., 0.0)`, and feed the log a safe value where a = 0.
"""

from minikd.engine import backend


def jsd(p, q, beta):
    xp = backend.xp()
    raise NotImplementedError("jsd(p, q, beta): one value per row")
