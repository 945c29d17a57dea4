"""Softmax with temperature, NLL, cross-entropy, KL, JSD and the distillation objective.

Every loss here has a hand-derived backward. ``cross_entropy``, ``kl_div``, ``jsd`` and
``distillation_loss`` are all one op, ``WeightedLoss``: per position r,
``a_r·CE(z_r, y_r) + b_r·D(p_T ‖ q_T)``, its value and closed-form gradient computed together
(``plain.py``; ``fused.py`` is the same sum in chunks on threads, NumPy only).
Logits have shape [..., V]; "positions" are all leading indices.
"""

from minikd.engine import backend, validate
from minikd.engine.autograd import Function, Tensor, data_of
from minikd.losses import fused
from minikd.losses import plain as plain_path
from minikd.losses.divergences import DIVERGENCES, softmax_parts

FORMS = ("interpolate", "additive")  # (1 − λ)·CE + λ·scale·D, or CE + λ·scale·D


# ---- softmax with temperature ----------------------------------------------------------------
class Softmax(Function):
    def forward(self, x, T=1.0, axis=-1):
        self.y, _ = softmax_parts(x, T, axis)
        self.T, self.axis = T, axis
        return self.y

    def backward(self, g):
        """y = softmax(x/T): dL/dx = y ⊙ (g − Σ_j g_j y_j) / T."""
        gy = g * self.y
        return ((gy - self.y * backend.xp().sum(gy, axis=self.axis, keepdims=True)) / self.T,)


class LogSoftmax(Function):
    def forward(self, x, T=1.0, axis=-1):
        self.probs, y = softmax_parts(x, T, axis)
        self.T, self.axis = T, axis
        return y

    def backward(self, g):
        """y = log softmax(x/T): dL/dx = (g − softmax(x/T) · Σ_j g_j) / T."""
        return ((g - self.probs * backend.xp().sum(g, axis=self.axis, keepdims=True)) / self.T,)


def _logits(name, x):
    """The raw array of logits (Tensor or array), checked to be float and finite."""
    x = data_of(x)
    validate.check_float_logits(name, x)
    validate.check_finite(name, x)
    return x


def softmax(x, T=1.0, axis=-1):
    """softmax(x / T) along ``axis``: T > 1 softens (toward uniform), T < 1 sharpens (toward one-hot)."""
    T = validate.check_temperature(T)
    _logits("x", x)
    return Softmax.apply(x, T=T, axis=axis)


def log_softmax(x, T=1.0, axis=-1):
    """log softmax(x / T) along ``axis``, computed as (x − max x)/T − log Σ exp((x − max x)/T)."""
    T = validate.check_temperature(T)
    _logits("x", x)
    return LogSoftmax.apply(x, T=T, axis=axis)


# ---- negative log-likelihood ------------------------------------------------------------------
class NLLLoss(Function):
    def forward(self, log_probs, targets, weights):
        xp = backend.xp()
        self.shape, self.weights, self.targets = log_probs.shape, weights, targets
        flat = xp.reshape(log_probs, (-1, log_probs.shape[-1]))  # (N, V)
        picked = xp.take_along_axis(flat, targets[:, None], axis=-1)[:, 0]  # (N,): log_probs[r, y_r]
        return -xp.sum(weights * picked)

    def backward(self, g):
        """L = −Σ_r w_r·log_probs[r, y_r]: dL/dlog_probs[r, j] = −w_r·1[j = y_r]."""
        onehot = plain_path.one_hot(self.targets, self.shape[-1], g.dtype)  # (N, V)
        return (backend.xp().reshape(-g * self.weights[:, None] * onehot, self.shape),)


def _mean_weights(keep, empty_message):
    """Weights 1/N on the N kept positions (flat), 0 elsewhere; a ValueError when N = 0."""
    count = int(backend.xp().sum(backend.xp().astype(keep, backend.xp().int64)))
    if count == 0:
        raise ValueError(f"{empty_message}; the mean is undefined")
    xp = backend.xp()
    return xp.astype(xp.reshape(keep, (-1,)), xp.float64) / count


def _position_weights(targets, leading_shape, num_classes, ignore_index):
    """Flat targets with ignored ones replaced by 0, and weights 1/N_valid on the kept positions."""
    targets = data_of(targets)
    validate.check_targets(targets, leading_shape, num_classes, ignore_index)
    xp = backend.xp()
    targets = xp.reshape(targets, (-1,))
    keep = targets != ignore_index
    weights = _mean_weights(keep, f"every position is ignored (all targets equal ignore_index={ignore_index})")
    return xp.where(keep, targets, xp.zeros_like(targets)), weights


def nll_loss(log_probs, targets, ignore_index=-100):
    """−mean over kept positions of ``log_probs[..., y]``; positions whose target is ``ignore_index`` are skipped."""
    lp = _logits("log_probs", log_probs)
    safe_targets, weights = _position_weights(targets, lp.shape[:-1], lp.shape[-1], ignore_index)
    return NLLLoss.apply(log_probs, targets=safe_targets, weights=backend.xp().astype(weights, lp.dtype))


# ---- the combined loss: cross-entropy and a divergence, value and gradient side by side ------------
class WeightedLoss(Function):
    """L = Σ_r a_r·CE(z_r, y_r) + b_r·D(p_T,r ‖ q_T,r) with p_T = softmax(v/T), q_T = softmax(z/T).

    The plain closed form (``weighted_loss_and_grad``) runs everywhere; under NumPy, for logits of
    at least ``fused.MIN_ELEMENTS`` entries and with ``backend.fast_paths`` on, the chunked,
    threaded ``fused.weighted_loss_and_grad`` computes the same numbers faster.
    """

    def forward(self, z, teacher=None, targets=None, ce_weights=None, div_weights=None,
                T=1.0, divergence="forward_kl", beta=0.5):
        self.shape = z.shape
        rows = (backend.xp().reshape(z, (-1, z.shape[-1])),  # (N, V)
                None if teacher is None else backend.xp().reshape(teacher, (-1, z.shape[-1])))
        path = fused if backend.fast_paths_enabled() and z.size >= fused.MIN_ELEMENTS else plain_path
        with backend.ignore_float_errors():  # bad logits surface as a clear error in _weighted_loss
            loss, self.dloss_dz = path.weighted_loss_and_grad(*rows, targets, ce_weights, div_weights, T,
                                                              DIVERGENCES[divergence], beta, self.needs_grad)
        return loss

    def backward(self, g):
        """dL/dz_r = a_r·(softmax(z_r) − onehot(y_r)) + (b_r/T)·dD/ds_r; already computed in forward.

        For forward KL dD/ds = q_T − p_T, so the whole gradient is one closed form.
        """
        return (g * backend.xp().reshape(self.dloss_dz, self.shape),)  # a fresh array: the leaf may keep it


def _weighted_loss(student_logits, teacher, targets, ce_weights, div_weights, T, divergence="forward_kl", beta=0.5):
    """Apply WeightedLoss and turn a non-finite result into an error that names the bad input."""
    loss = WeightedLoss.apply(student_logits, teacher=teacher, targets=targets, ce_weights=ce_weights,
                              div_weights=div_weights, T=T, divergence=divergence, beta=beta)
    if not bool(backend.xp().isfinite(loss.data)):  # one synchronisation per loss
        validate.check_finite("student_logits", data_of(student_logits))
        if teacher is not None:
            validate.check_finite("teacher_logits", teacher)
        xp = backend.xp()
        scaled = float(xp.max(xp.abs(data_of(student_logits)))) / T  # a Python float: may exceed the dtype
        if scaled > float(xp.finfo(loss.dtype).max) or div_weights is None:
            raise ValueError(f"the loss overflowed to {loss.item()} although the logits are finite: divided by "
                             f"T={T} they reach {scaled:.3g}, beyond {backend.dtype_name(loss.dtype)}; choose a larger T")
        raise ValueError(f"the loss overflowed to {loss.item()} although the logits are finite: the distillation "
                         f"weight λ·T² reaches {float(xp.max(div_weights)):.3g}; choose a smaller λ")
    return loss


def _student(student_logits):
    """The student's logits as a Tensor (so that its gradient can flow), checked to be float."""
    student = student_logits if isinstance(student_logits, Tensor) else Tensor(student_logits)
    validate.check_float_logits("student_logits", student.data)
    return student


def _teacher(teacher_logits, student):
    """The teacher's logits as a raw array, cut from any graph: no gradient flows to the teacher."""
    teacher = data_of(teacher_logits)
    validate.check_float_logits("teacher_logits", teacher)
    validate.check_same_shape(student.data, teacher)
    return backend.xp().astype(teacher, student.dtype, copy=False)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean over kept positions of −log softmax(z)[y]; gradient (softmax(z) − onehot(y)) / N."""
    z = _student(logits)
    safe_targets, weights = _position_weights(targets, z.shape[:-1], z.shape[-1], ignore_index)
    return _weighted_loss(z, None, safe_targets, backend.xp().astype(weights, z.dtype), None, 1.0)


def _divergence_weights(mask, student):
    """Weights 1/N_mask on the positions where ``mask`` is true (all positions when None)."""
    xp = backend.xp()
    leading = student.shape[:-1]
    keep = (xp.ones(leading, dtype=xp.bool, device=backend.device()) if mask is None
            else validate.check_mask(data_of(mask), leading))
    return xp.astype(_mean_weights(keep, "mask selects no position"), student.dtype)


def kl_div(student_logits, teacher_logits, T=1.0, direction="forward", mask=None):
    """Mean over masked positions of KL(p_T ‖ q_T) (``"forward"``) or KL(q_T ‖ p_T) (``"reverse"``).

    p_T = softmax(teacher/T), q_T = softmax(student/T); the gradient reaches only the student.
    """
    T = validate.check_temperature(T)
    validate.check_choice("direction", direction, ("forward", "reverse"))
    student = _student(student_logits)
    teacher = _teacher(teacher_logits, student)
    weights = _divergence_weights(mask, student)
    return _weighted_loss(student, teacher, None, None, weights, T, f"{direction}_kl")


def jsd(student_logits, teacher_logits, T=1.0, beta=0.5, mask=None):
    """Mean over masked positions of β·KL(p_T ‖ M) + (1−β)·KL(q_T ‖ M), M = β·p_T + (1−β)·q_T."""
    T = validate.check_temperature(T)
    beta = validate.check_beta(beta)
    student = _student(student_logits)
    teacher = _teacher(teacher_logits, student)
    weights = _divergence_weights(mask, student)
    return _weighted_loss(student, teacher, None, None, weights, T, "jsd", beta)


def distillation_loss(student_logits, teacher_logits, targets, *, lam=0.5, T=2.0, divergence="forward_kl",
                      beta=0.5, scale_T2=True, form="interpolate", ignore_index=-100):
    """The knowledge-distillation objective, with s = T² (``scale_T2``) or 1:

    - ``form="interpolate"``: (1 − lam)·CE(student, targets) + lam·s·D(teacher_T ‖ student_T)
    - ``form="additive"`` (the textbook's): CE + lam·s·D

    D (``"forward_kl"``, ``"reverse_kl"`` or ``"jsd"``) is averaged over exactly the positions CE
    averages over (targets not ``ignore_index``); if every position is ignored, a ValueError is
    raised. The gradient w.r.t. the student logits is one fused closed form; for forward KL,
    [(1 − lam)(softmax(z) − onehot(y)) + lam·(s/T)(q_T − p_T)] / N. The teacher gets no gradient.
    """
    form = validate.check_choice("form", form, FORMS)
    divergence = validate.check_choice("divergence", divergence, tuple(DIVERGENCES))
    T = validate.check_temperature(T)
    lam = validate.check_lam(lam, form)
    beta = validate.check_beta(beta) if divergence == "jsd" else beta
    student = _student(student_logits)
    teacher = _teacher(teacher_logits, student)
    safe_targets, weights = _position_weights(targets, student.shape[:-1], student.shape[-1], ignore_index)
    scale = T * T if scale_T2 else 1.0
    ce_weights = weights * (1.0 - lam if form == "interpolate" else 1.0)
    div_weights = weights * (lam * scale)
    xp = backend.xp()
    return _weighted_loss(student, teacher, safe_targets, xp.astype(ce_weights, student.dtype),
                          xp.astype(div_weights, student.dtype), T, divergence, beta)
