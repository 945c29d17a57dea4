"""The checks of the loss exercises (tutorials 1 to 3): softmax and log-softmax with T, NLL, KL, T², the
combined objective, JSD. Each compares with the reference solution and names the known wrong answers.
"""

import math

from minikd.engine import backend
from minikd.engine.autograd import Function, Tensor
from minikd.engine.gradcheck import GradcheckError, gradcheck
from minikd.tools.exercises.grading import Check, Failed, copy, expect, host, normal, integers, probabilities, unpack
from minikd.tools.exercises.solutions import (combined_objective, jsd, kl, log_softmax, nll, softmax_temperature,
                                             t_squared)

OVERFLOW = "overflow at logits ±1e4: subtract the max before exp"
CASES = (((6,), 1.0), ((3, 7), 2.0), ((2, 3, 4), 0.5))  # (shape, T): leading axes of 0, 1 and 2
BATCHES = (((4, 5), 1.0), ((7, 3), 2.0), ((1, 6), 4.0))  # (N, V), T for the (loss, grad) exercises


def _huge_logits(shape, seed):
    """Logits of ±1e4 with a single clear maximum per row."""
    return normal(shape, seed) * 1e4


def _cases_label(cases, with_T=True):
    shapes = "shapes " + ", ".join(str(s) for s, _ in cases)
    return shapes + "; T = " + ", ".join(f"{T:g}" for _, T in cases) if with_T else shapes


# ---- softmax and log-softmax with temperature -------------------------------------------------------------
def _distribution_checks(reference, wrong_of, limits):
    """Checks shared by softmax and log_softmax: values, float32, overflow and a limit."""

    def values(student):
        for n, (shape, T) in enumerate(CASES):
            z = normal(shape, 10 + n, 2.0)
            expect(f"shape {shape}, T = {T:g}", reference(z, T), student(copy(z), T), hints=wrong_of(z, T))

    def float32(student):
        z = backend.xp().astype(normal((4, 9), 20, 3.0), backend.xp().float32)
        expect("float32 logits (4, 9), T = 2", reference(z, 2.0), student(copy(z), 2.0), dtype="float32")

    def overflow(student):
        for T in (1.0, 0.5):
            z = _huge_logits((3, 5), 30)
            expect(f"logits ±1e4, T = {T:g}", reference(z, T), student(copy(z), T), nonfinite_hint=OVERFLOW)

    return [Check(f"values against the reference ({_cases_label(CASES)})", values),
            Check("float32 in, float32 out (tolerance 1e-4)", float32),
            Check("logits of ±1e4 stay finite", overflow), limits]


def _softmax_wrong(z, T):
    xp = backend.xp()
    ref = softmax_temperature.softmax
    wrong = [(ref(z, 1.0), "T is ignored: divide the logits by T"),
             (ref(z * T, 1.0), "the logits are multiplied by T: softmax(z / T) divides")]
    if z.ndim >= 2:
        along_first = xp.exp((z - xp.max(z, axis=0, keepdims=True)) / T)
        wrong.append((along_first / xp.sum(along_first, axis=0, keepdims=True),
                      "normalised along the first axis: use axis=-1"))
    return wrong


def _softmax_limits(student):
    xp = backend.xp()
    z = normal((3, 6), 40, 1.0)
    onehot = xp.astype(xp.arange(6, device=backend.device()) == xp.argmax(z, axis=-1)[:, None], z.dtype)
    expect("T = 0.001 (→ one-hot of argmax)", onehot, student(copy(z), 1e-3), nonfinite_hint=OVERFLOW)
    expect("T = 1e6 (→ uniform)", xp.full((3, 6), 1 / 6, device=backend.device()), student(copy(z), 1e6),
           tol=(1e-5, 1e-8))
    rows = host(student(copy(z), 3.0), "T = 3").sum(axis=-1)
    expect("each row sums to 1", xp.ones(3, device=backend.device()), rows)


def softmax_checks():
    return _distribution_checks(softmax_temperature.softmax, _softmax_wrong,
                                Check("limits: T → 0 is one-hot, T → ∞ uniform; rows sum to 1", _softmax_limits))


def _log_softmax_wrong(z, T):
    xp = backend.xp()
    ref = log_softmax.log_softmax
    shifted = (z - xp.max(z, axis=-1, keepdims=True)) / T
    return [(ref(z, 1.0), "T is ignored: divide the logits by T"),
            (shifted, "not normalised: subtract log Σ exp(s) from s"),
            (z / T, "not normalised: subtract log Σ exp(z / T)")]


def _log_softmax_limits(student):
    z = backend.from_numpy(backend.host_xp().asarray([[0.0, -1e4, 1.0], [5.0, 5.0, -2e4]]))
    expect("logits with a class 1e4 below the rest (probability underflows to 0)", log_softmax.log_softmax(z, 1.0),
           student(copy(z), 1.0), nonfinite_hint="−inf where the probability underflows: compute "
           "(z − max)/T − log Σ exp((z − max)/T), never log(softmax(z))")
    z = normal((2, 5), 50, 2.0)
    expect("shift invariance: log_softmax(z + 100) = log_softmax(z)", student(copy(z), 2.0), student(z + 100.0, 2.0))


def log_softmax_checks():
    return _distribution_checks(log_softmax.log_softmax, _log_softmax_wrong,
                                Check("no −inf where a probability underflows; shift invariance", _log_softmax_limits))


# ---- losses with their gradients: the shared checks -------------------------------------------------------
class _StudentLoss(Function):
    """Wraps a student's (loss, grad) so minikd's gradcheck can compare the grad with finite differences."""

    def forward(self, z, fn, args):
        loss, grad = unpack(fn(copy(z), *args), ("loss", "grad"))
        self.grad = backend.from_numpy(host(grad, "grad"))
        return backend.from_numpy(host(loss, "loss").reshape(()))

    def backward(self, g):
        return (g * self.grad,)


def _gradcheck_own_loss(student, z, args):
    """Fail unless the student's gradient matches central differences of the student's own loss."""
    try:
        gradcheck(lambda t: _StudentLoss.apply(t, fn=student, args=args), Tensor(z, requires_grad=True))
    except GradcheckError as err:
        r = err.report
        raise Failed(f"your gradient disagrees with finite differences of your loss: worst at index {r.worst_index}: "
                     f"yours {r.analytic:.8g}, finite differences {r.numeric:.8g}") from None


def _loss_checks(reference, make_inputs, wrong, factors, cases=BATCHES, extra=(), with_T=True):
    """Values of loss and grad against the reference, the student's grad by gradcheck, overflow, extras.

    ``make_inputs(shape, T, seed)`` gives (z, args); ``wrong(z, args)`` gives [(loss, grad, message)];
    ``factors(z, args)`` gives ({c: message} for the loss, {c: message} for the gradient).
    """

    def compare(label, z, args, student):
        loss, grad = unpack(student(copy(z), *args), ("loss", "grad"))
        expected_loss, expected_grad = reference(z, *args)
        known = wrong(z, args)
        loss_factors, grad_factors = factors(z, args)
        expect(f"gradient, {label}", expected_grad, grad, hints=[(w[1], w[2]) for w in known], factors=grad_factors,
               nonfinite_hint=OVERFLOW)
        expect(f"loss, {label}", expected_loss, loss, hints=[(w[0], w[2]) for w in known], factors=loss_factors,
               nonfinite_hint=OVERFLOW)

    def values(student):
        for n, (shape, T) in enumerate(cases):
            z, args = make_inputs(shape, T, 60 + n)
            compare(f"shape {shape}" + (f", T = {T:g}" if with_T else ""), z, args, student)

    def by_gradcheck(student):
        z, args = make_inputs((3, 4), 2.0, 70)
        _gradcheck_own_loss(student, z, args)

    def overflow(student):
        z, args = make_inputs((3, 5), 2.0, 80)
        compare("logits ±1e4", z * 1e4, tuple(a * 1e4 if _is_logits(a, z) else a for a in args), student)

    return [Check(f"loss and gradient against the reference ({_cases_label(cases, with_T)})", values),
            Check("your gradient against finite differences of your loss (gradcheck)", by_gradcheck),
            Check("logits of ±1e4 stay finite", overflow), *extra]


def _is_logits(a, z):
    return hasattr(a, "shape") and a.shape == z.shape and backend.is_float_dtype(a.dtype)


def _scaled(pair, c):
    return c * pair[0], c * pair[1]


# ---- NLL ----------------------------------------------------------------------------------------------------
def _nll_inputs(shape, T, seed):
    return normal(shape, seed, 2.0), (integers(shape[1], (shape[0],), seed + 1),)


def _nll_wrong(z, args):
    loss, grad = nll.nll(z, *args)
    return [(loss, -grad, "wrong sign: the gradient is softmax(z) − onehot(y), not onehot(y) − softmax(z)")]


def _nll_factors(z, args):
    N = z.shape[0]
    summed = "summed over the N rows, not averaged: divide by N"
    return {N: summed, -1.0: "wrong sign: the loss is −log softmax(z)[y]"}, {N: "gradient " + summed}


def _nll_rows_sum_to_zero(student):
    z, (y,) = _nll_inputs((5, 4), 1.0, 90)
    _, grad = unpack(student(copy(z), y), ("loss", "grad"))
    expect("each gradient row sums to 0 (shift invariance of the loss)", backend.xp().zeros(5),
           host(grad, "grad").sum(axis=-1))


def nll_checks():
    return _loss_checks(nll.nll, _nll_inputs, _nll_wrong, _nll_factors,
                        cases=(((4, 5), 1.0), ((7, 3), 1.0), ((1, 6), 1.0)), with_T=False,
                        extra=[Check("gradient rows sum to 0", _nll_rows_sum_to_zero)])


# ---- KL and the T² factor --------------------------------------------------------------------------------------
def _kl_inputs(shape, T, seed):
    return normal(shape, seed, 2.0), (normal(shape, seed + 1, 2.0), T)


def _reverse_kl(z, v, T):
    """KL(q_T ‖ p_T) and its gradient q ⊙ (r − KL)/(T·N), r = log q − log p: the wrong direction."""
    xp = backend.xp()
    log_p, log_q = log_softmax.log_softmax(v, T), log_softmax.log_softmax(z, T)
    q = xp.exp(log_q)
    r = log_q - log_p
    per_row = xp.sum(q * r, axis=-1, keepdims=True)
    return xp.sum(per_row) / z.shape[0], q * (r - per_row) / (T * z.shape[0])


def _kl_wrong(z, args, scale=1.0, name="KL"):
    v, T = args
    loss, grad = kl.kl(z, v, T)
    reverse = _scaled(_reverse_kl(z, v, T), scale)
    return [(*reverse, f"this is {name}(q_T ‖ p_T): the teacher's p_T comes first, Σ p_T (log p_T − log q_T)"),
            (scale * loss, -scale * grad, "wrong sign: the gradient is (q_T − p_T), student minus teacher")]


def _kl_factors(z, args):
    v, T = args
    N = z.shape[0]
    return ({N: "summed over the N rows, not averaged: divide by N"},
            {T: "gradient off by a factor T: the chain rule through z/T adds a 1/T",
             N: "gradient summed over the N rows, not averaged: divide by N"})


def _kl_properties(student):
    xp = backend.xp()
    z, (v, T) = _kl_inputs((4, 6), 2.0, 100)
    loss, grad = unpack(student(copy(z), copy(z), T), ("loss", "grad"))
    expect("KL(p ‖ p) = 0", xp.zeros((), device=backend.device()), loss)
    expect("its gradient is 0", xp.zeros((4, 6), device=backend.device()), grad)
    loss, _ = unpack(student(copy(z), v, T), ("loss", "grad"))
    if float(host(loss, "loss").reshape(-1)[0]) < 0:
        raise Failed(f"KL ≥ 0 is violated: got {float(host(loss, 'loss').reshape(-1)[0]):.8g}")


def kl_checks():
    return _loss_checks(kl.kl, _kl_inputs, _kl_wrong, _kl_factors,
                        extra=[Check("KL(p ‖ p) = 0 with zero gradient; KL ≥ 0", _kl_properties)])


def _soft_wrong(z, args):
    v, T = args
    return _kl_wrong(z, args, scale=T * T, name="T²·KL")


def _soft_factors(z, args):
    v, T = args
    N = z.shape[0]
    missing = "the soft term's T² is missing"
    return ({1 / T**2: f"loss off by a factor T²: {missing}", 1 / T: "loss off by a factor T: the scale is T², not T",
             N: "summed over the N rows, not averaged: divide by N"},
            {1 / T**2: f"gradient off by a factor T²: {missing}", 1 / T: "gradient off by a factor T: the scale is T², not T",
             T: "gradient off by a factor T: the chain rule through z/T adds a 1/T",
             N: "gradient summed over the N rows, not averaged: divide by N"})


def _hinton_limit(student):
    """At high T, T·(q_T − p_T) → ((z − z̄) − (v − v̄))/V: logit matching, here also divided by N."""
    xp = backend.xp()
    z, (v, _) = _kl_inputs((3, 5), 1.0, 110)
    T = 1e4
    _, grad = unpack(student(copy(z), v, T), ("loss", "grad"))
    limit = ((z - xp.mean(z, axis=-1, keepdims=True)) - (v - xp.mean(v, axis=-1, keepdims=True))) / (5 * 3)
    expect("T = 1e4: gradient → ((z − z̄) − (v − v̄))/(V·N)", limit, grad, tol=(1e-2, 1e-6),
           factors={1 / T**2: "gradient off by a factor T²: the soft term's T² is missing",
                    1 / T: "gradient off by a factor T: the scale is T², not T"})


def t_squared_checks():
    return _loss_checks(t_squared.soft_term, _kl_inputs, _soft_wrong, _soft_factors,
                        extra=[Check("Hinton's high-temperature limit (T = 1e4)", _hinton_limit)])


# ---- the combined objective --------------------------------------------------------------------------------------
COMBINED = ((0.3, 2.0, "interpolate"), (0.7, 4.0, "interpolate"), (0.5, 2.0, "additive"), (2.0, 3.0, "additive"))


def _combined_inputs(shape, lam, T, form, seed):
    return normal(shape, seed, 2.0), (normal(shape, seed + 1, 2.0), integers(shape[1], (shape[0],), seed + 2),
                                      lam, T, form)


def _mix(z, v, y, hard, soft, T):
    """hard·CE + soft·T²·KL, value and gradient, from the reference parts."""
    ce, ce_grad = nll.nll(z, y)
    kd, kd_grad = t_squared.soft_term(z, v, T)
    return hard * ce + soft * kd, hard * ce_grad + soft * kd_grad


def _combined_wrong(z, args):
    v, y, lam, T, form = args
    hard = 1.0 - lam if form == "interpolate" else 1.0
    soft_ce, soft_ce_grad = nll.nll(z / T, y)  # CE of softmax(z/T): the hard term at temperature T
    kd, kd_grad = t_squared.soft_term(z, v, T)
    wrong = [(*_mix(z, v, y, hard, lam / T**2, T), "the soft term's T² is missing"),
             (hard * soft_ce + lam * kd, hard * soft_ce_grad / T + lam * kd_grad,
              "the cross-entropy is taken at temperature T: the hard-label term uses T = 1"),
             (*_mix(z, v, y, 1.0 - lam, lam, T), "form='additive' is CE + λ·T²·KL, with no (1 − λ) on the CE"),
             (*_mix(z, v, y, 1.0, lam, T), "form='interpolate' is (1 − λ)·CE + λ·T²·KL: the CE's (1 − λ) is missing")]
    if form == "interpolate":
        wrong.insert(0, (*_mix(z, v, y, lam, 1.0 - lam, T),
                         "λ on the wrong term: (1 − λ) weighs the cross-entropy and λ the soft term"))
    return wrong


def _combined_checks_for(cases):
    def values(student):
        for n, (lam, T, form) in enumerate(cases):
            z, args = _combined_inputs((4, 5), lam, T, form, 120 + 3 * n)
            label = f"λ = {lam:g}, T = {T:g}, form = {form!r}"
            loss, grad = unpack(student(copy(z), *args), ("loss", "grad"))
            expected_loss, expected_grad = combined_objective.distillation_loss(z, *args)
            known = _combined_wrong(z, args)
            expect(f"loss, {label}", expected_loss, loss, hints=[(w[0], w[2]) for w in known], nonfinite_hint=OVERFLOW)
            expect(f"gradient, {label}", expected_grad, grad, hints=[(w[1], w[2]) for w in known],
                   nonfinite_hint=OVERFLOW)
    return values


def _combined_limits(student):
    z, (v, y, _, T, _) = _combined_inputs((3, 4), 0.0, 2.0, "interpolate", 140)
    ce = nll.nll(z, y)
    soft = t_squared.soft_term(z, v, T)
    for lam, form, (loss, grad), what in ((0.0, "interpolate", ce, "CE"), (1.0, "interpolate", soft, "T²·KL"),
                                          (0.0, "additive", ce, "CE")):
        got = unpack(student(copy(z), v, y, lam, T, form), ("loss", "grad"))
        label = f"λ = {lam:g}, form = {form!r} is {what} alone"
        expect(f"loss, {label}", loss, got[0])
        expect(f"gradient, {label}", grad, got[1])
    lam_additive = 0.5  # additive(λ') = (1 + λ')·interpolate(λ'/(1 + λ'))
    additive = unpack(student(copy(z), v, y, lam_additive, T, "additive"), ("loss", "grad"))
    inner = unpack(student(copy(z), v, y, lam_additive / (1 + lam_additive), T, "interpolate"), ("loss", "grad"))
    expect("additive(λ') = (1 + λ')·interpolate(λ'/(1 + λ'))", (1 + lam_additive) * host(inner[0], "loss"), additive[0])


def _combined_gradcheck(student):
    z, args = _combined_inputs((3, 4), 0.4, 2.0, "interpolate", 150)
    _gradcheck_own_loss(student, z, args)
    z, args = _combined_inputs((3, 4), 1.5, 3.0, "additive", 151)
    _gradcheck_own_loss(student, z, args)


def _combined_overflow(student):
    z, (v, y, lam, T, form) = _combined_inputs((3, 5), 0.5, 2.0, "interpolate", 160)
    loss, grad = unpack(student(z * 1e4, v * 1e4, y, lam, T, form), ("loss", "grad"))
    expected = combined_objective.distillation_loss(z * 1e4, v * 1e4, y, lam, T, form)
    expect("loss, logits ±1e4", expected[0], loss, nonfinite_hint=OVERFLOW)
    expect("gradient, logits ±1e4", expected[1], grad, nonfinite_hint=OVERFLOW)


def combined_objective_checks():
    interpolate = tuple(c for c in COMBINED if c[2] == "interpolate")
    additive = tuple(c for c in COMBINED if c[2] == "additive")
    return [Check("interpolate form: loss and gradient against the reference (λ = 0.3, 0.7; T = 2, 4)",
                  _combined_checks_for(interpolate)),
            Check("additive form: loss and gradient against the reference (λ = 0.5, 2; T = 2, 3)",
                  _combined_checks_for(additive)),
            Check("your gradient against finite differences of your loss (gradcheck, both forms)", _combined_gradcheck),
            Check("limits λ = 0 (CE), λ = 1 (T²·KL) and the additive/interpolate identity", _combined_limits),
            Check("logits of ±1e4 stay finite", _combined_overflow)]


# ---- the generalised JSD ---------------------------------------------------------------------------------------
def _binary_entropy(beta):
    return -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)


def _jsd_wrong(p, q, beta):
    ref = jsd.jsd
    xp = backend.xp()
    m_swapped = (1 - beta) * p + beta * q
    swapped = beta * jsd._kl_rows(p, m_swapped) + (1 - beta) * jsd._kl_rows(q, m_swapped)
    return [(swapped, "M has its weights the wrong way round: M = β·p + (1 − β)·q"),
            (ref(p, q, 0.5), "β is ignored: the weights are β and 1 − β, not ½ and ½"),
            (ref(p, q, 1 - beta), "β and 1 − β are swapped"),
            (xp.sum(p * (xp.log(p) - xp.log(q)), axis=-1), "this is KL(p ‖ q), not the JSD through the mixture M")]


def _jsd_values(student):
    for n, (shape, beta) in enumerate((((5,), 0.5), ((3, 6), 0.3), ((2, 3, 4), 0.8))):
        p, q = probabilities(shape, 170 + 2 * n), probabilities(shape, 171 + 2 * n)
        expect(f"shape {shape}, β = {beta:g}", jsd.jsd(p, q, beta), student(copy(p), copy(q), beta),
               hints=_jsd_wrong(p, q, beta), shape_hint="return one value per row (shape p.shape[:-1]), not their mean")


def _jsd_zeros(student):
    xp = backend.xp()
    p = probabilities((4, 5), 180)
    p = xp.where(xp.arange(5, device=backend.device()) < 2, 0.0, p)
    p = p / xp.sum(p, axis=-1, keepdims=True)  # rows with exact zeros
    q = probabilities((4, 5), 181)
    expect("p with exact zeros, β = 0.4", jsd.jsd(p, q, 0.4), student(copy(p), copy(q), 0.4),
           nonfinite_hint="NaN where p = 0: the term 0·log 0 is 0; use xp.where(p > 0, ..., 0.0)")


def _jsd_bounds(student):
    xp = backend.xp()
    p, q = probabilities((3, 5), 190), probabilities((3, 5), 191)
    expect("symmetry: JSD_β(p, q) = JSD_(1−β)(q, p), β = 0.3", student(copy(q), copy(p), 0.7),
           student(copy(p), copy(q), 0.3))
    expect("JSD(p, p) = 0", xp.zeros(3, device=backend.device()), student(copy(p), copy(p), 0.3))
    eye = xp.eye(4, dtype=p.dtype, device=backend.device())
    for beta in (0.5, 0.2):
        expect(f"disjoint supports reach the bound H(β) = {_binary_entropy(beta):.6g} at β = {beta:g}",
               xp.full(3, _binary_entropy(beta), device=backend.device()),
               student(copy(eye[:3, :]), copy(eye[1:, :]), beta),
               nonfinite_hint="NaN where a probability is 0: the term 0·log 0 is 0")


def jsd_checks():
    return [Check("values against the reference (shapes (5,), (3, 6), (2, 3, 4); β = 0.5, 0.3, 0.8)", _jsd_values),
            Check("probabilities of exactly 0 (0·log 0 = 0)", _jsd_zeros),
            Check("symmetry, JSD(p, p) = 0 and the bound H(β) for disjoint supports", _jsd_bounds)]
