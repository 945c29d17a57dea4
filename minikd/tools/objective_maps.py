"""The distillation objective as a map: over the probability simplex of 3 classes for a teacher
distribution the student gives, and over a grid of (λ, T) for fixed student and teacher logits.

The simplex map evaluates, for every student distribution q on a grid of the triangle,
L(q) = a·(−log q_y) + b·D(p_T ‖ q_T), with q_T = softmax(log q / T), a = 1 − λ (interpolated form)
or 1 (additive), b = λ·T² (or λ without ``scale_T2``): the per-position value ``distillation_loss``
averages, from the same divergences (``losses.divergences``).
"""

from minikd.engine import backend, validate
from minikd.losses import functional as F
from minikd.losses.divergences import DIVERGENCES, softmax_parts
from minikd.losses.functional import FORMS


def check_distribution(name, values):
    """Three probabilities, each in (0, 1), summing to 1 (to 1e-6); returns them as floats."""
    values = [float(v) for v in values]
    if len(values) != 3 or not all(0.0 < v < 1.0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"{name} must be three probabilities in (0, 1) that sum to 1, got {values}")
    return values


def simplex_grid(steps):
    """Interior points (i/steps, j/steps, 1 − (i + j)/steps) of the triangle: a host array (n, 3)."""
    np = backend.host_xp()
    validate.check_positive_int("steps", steps)
    return np.array([(i / steps, j / steps, 1 - (i + j) / steps)
                     for i in range(1, steps) for j in range(1, steps - i)])


def simplex_objective(teacher_probs, label, lam, T, divergence="forward_kl", beta=0.5, form="interpolate",
                      scale_T2=True, steps=60):
    """(q, values, minimiser): the objective at every grid point q (n, 3) of the simplex, for a student
    whose distribution is q, a teacher with distribution ``teacher_probs`` and the true class ``label``.
    Host arrays; the minimiser is the grid point with the lowest value."""
    np = backend.host_xp()
    xp = backend.xp()
    validate.check_choice("form", form, FORMS)
    validate.check_choice("divergence", divergence, tuple(DIVERGENCES))
    T, lam = validate.check_temperature(T), validate.check_lam(lam, form)
    check_distribution("teacher_probs", teacher_probs)
    if label not in (0, 1, 2):
        raise ValueError(f"label must be a class of the simplex, 0, 1 or 2, got {label!r}")
    grid = simplex_grid(steps)
    log_q = xp.log(backend.from_numpy(grid))  # (n, 3): logits whose softmax is q
    teacher = xp.log(backend.from_numpy(np.array(teacher_probs)))[None, :]  # (1, 3)
    q_T, log_q_T = softmax_parts(log_q, T)
    p_T, log_p_T = softmax_parts(teacher, T)
    soft, _ = DIVERGENCES[divergence](p_T, log_p_T, q_T, log_q_T, beta, with_grad=False)  # (n,)
    hard = -log_q[:, label]  # (n,)
    hard_weight = 1.0 - lam if form == "interpolate" else 1.0
    values = backend.to_numpy(hard_weight * hard + lam * (T * T if scale_T2 else 1.0) * soft)
    return grid, values, grid[int(np.argmin(values))]


def objective_over_lam_T(student_logits, teacher_logits, targets, lams, temperatures, **options):
    """``distillation_loss`` for each λ (rows) and T (columns): a host array (len(lams), len(temperatures)).

    ``options`` go to ``distillation_loss`` (divergence, beta, form, scale_T2, ignore_index).
    """
    np = backend.host_xp()
    return np.array([[F.distillation_loss(student_logits, teacher_logits, targets, lam=float(lam), T=float(T),
                                          **options).item() for T in temperatures] for lam in lams])
