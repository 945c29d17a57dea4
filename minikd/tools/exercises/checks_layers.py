"""The checks of the model exercises (tutorial 4): an autograd Function, LayerNorm and attention backward,
one AdamW step. Each backward is checked against the reference and through minikd's gradcheck.
"""

import math

from minikd.engine import backend
from minikd.engine.autograd import Function, Tensor
from minikd.engine.gradcheck import GradcheckError, gradcheck
from minikd.tools.exercises.grading import Check, Failed, copy, expect, host, normal, unpack
from minikd.tools.exercises.solutions import adamw_step, attention_backward, autograd_function, layer_norm_backward


def _gradcheck(label, fn, *inputs):
    """minikd's gradcheck, its failure turned into a one-line diagnosis naming the worst element."""
    try:
        gradcheck(fn, *inputs)
    except GradcheckError as err:
        r = err.report
        raise Failed(f"{label}: autograd disagrees with finite differences at input {r.worst_input}, index "
                     f"{r.worst_index}: autograd {r.analytic:.8g}, finite differences {r.numeric:.8g}") from None


# ---- an autograd Function: the sigmoid -----------------------------------------------------------------------
def _sigmoid(x):
    return autograd_function.Sigmoid().forward(x)


def _is_function(student):
    if not (isinstance(student, type) and issubclass(student, Function)):
        raise Failed("Sigmoid must be a class that subclasses minikd.engine.autograd.Function")


def _fresh(student):
    """An instance of the student's Function as ``apply`` makes it (``needs_grad`` set)."""
    _is_function(student)
    fn = student()
    fn.needs_grad = True
    return fn


def _sigmoid_forward(student):
    for n, shape in enumerate(((5,), (3, 4), (2, 2, 3))):
        x = normal(shape, 200 + n, 3.0)
        expect(f"forward, shape {shape}", _sigmoid(x), _fresh(student).forward(copy(x)),
               hints=[(1.0 / (1.0 + backend.xp().exp(x)), "that is σ(−x): σ(x) = 1/(1 + e^(−x))")])
    x = backend.from_numpy(backend.host_xp().asarray([-1e4, -50.0, 0.0, 50.0, 1e4]))
    expect("forward at ±1e4", _sigmoid(x), _fresh(student).forward(copy(x)),
           nonfinite_hint="overflow at ±1e4: write σ(x) = ½(1 + tanh(x/2)), or use exp(−|x|)")


def _sigmoid_backward(student):
    x, g = normal((3, 4), 210, 2.0), normal((3, 4), 211)
    fn = _fresh(student)
    fn.forward(copy(x))
    grads = fn.backward(copy(g))
    if not isinstance(grads, (tuple, list)):
        raise Failed(f"backward returned a {type(grads).__name__}: return a tuple with one gradient per input, (dx,)")
    (dx,) = unpack(grads, ("dx",))
    y = _sigmoid(x)
    expect("backward with a random upstream gradient g", g * y * (1 - y), dx,
           hints=[(y * (1 - y), "backward ignores the upstream gradient g: multiply the local derivative by g"),
                  (g * y, "the factor (1 − σ) is missing: dσ/dx = σ(1 − σ)"),
                  (g * (1 - y), "the factor σ is missing: dσ/dx = σ(1 − σ)"),
                  (g * x * (1 - x), "σ(1 − σ) is computed from the input x, not from the output y = σ(x)")])


def _sigmoid_gradcheck(student):
    _is_function(student)
    x = Tensor(normal((2, 5), 220, 2.0), requires_grad=True)
    w = Tensor(normal((2, 5), 221))
    _gradcheck("Sigmoid.apply(x) inside a graph", lambda x: student.apply(x) * w + student.apply(x * w), x)


def autograd_function_checks():
    return [Check("forward against the reference (shapes (5,), (3, 4), (2, 2, 3); x = ±1e4)", _sigmoid_forward),
            Check("backward against g·σ(1 − σ) with a random g", _sigmoid_backward),
            Check("Sigmoid.apply through minikd's gradcheck, used twice in one graph", _sigmoid_gradcheck)]


# ---- LayerNorm backward -------------------------------------------------------------------------------------
EPS = 1e-5


class _LayerNorm(Function):
    """The reference forward with the student's backward, so gradcheck tests the student's gradients."""

    def forward(self, x, gamma, beta, backward):
        xp = backend.xp()
        self.x, self.gamma, self.student_backward = x, gamma, backward
        centred = x - xp.mean(x, axis=-1, keepdims=True)
        return centred / xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + EPS) * gamma + beta

    def backward(self, g):
        parts = unpack(self.student_backward(copy(g), copy(self.x), copy(self.gamma), EPS), ("dx", "dgamma", "dbeta"))
        return tuple(backend.from_numpy(host(p, name)) for p, name in zip(parts, ("dx", "dgamma", "dbeta")))


def _layer_norm_wrong(g, x, gamma):
    xp = backend.xp()
    ref = layer_norm_backward.layer_norm_backward
    dx, dgamma, dbeta = ref(g, x, gamma, EPS)
    centred = x - xp.mean(x, axis=-1, keepdims=True)
    sigma = xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + EPS)
    ghat = g * gamma
    no_sigma_term = (ghat - xp.mean(ghat, axis=-1, keepdims=True)) / sigma
    return {"dx": [(no_sigma_term, "the term − x̂·mean(ĝ·x̂) is missing: σ depends on x too"),
                   (ref(g, x, xp.ones_like(gamma), EPS)[0], "γ is missing from dx: use ĝ = g·γ"),
                   (dx * sigma, "the final division by σ is missing")],
            "dgamma": [(xp.sum(g * centred, axis=tuple(range(g.ndim - 1))), "dγ uses x − μ instead of x̂ = (x − μ)/σ")],
            "dbeta": []}


def _layer_norm_values(student):
    for n, shape in enumerate(((4, 6), (2, 3, 5))):
        x, g = normal(shape, 230 + n, 2.0) + 1.0, normal(shape, 240 + n)
        gamma = normal(shape[-1:], 250 + n) + 1.5
        got = unpack(student(copy(g), copy(x), copy(gamma), EPS), ("dx", "dgamma", "dbeta"))
        expected = layer_norm_backward.layer_norm_backward(g, x, gamma, EPS)
        wrong = _layer_norm_wrong(g, x, gamma)
        for name, e, o in zip(("dx", "dgamma", "dbeta"), expected, got):
            expect(f"{name}, shape {shape}", e, o, hints=wrong[name],
                   shape_hint="sum over every axis but the last" if name != "dx" else None)


def _layer_norm_gradcheck(student):
    x = Tensor(normal((3, 4), 260, 2.0), requires_grad=True)
    gamma, beta = Tensor(normal((4,), 261) + 1.0, requires_grad=True), Tensor(normal((4,), 262), requires_grad=True)
    _gradcheck("layer norm with your backward", lambda x, gamma, beta: _LayerNorm.apply(x, gamma, beta, backward=student),
               x, gamma, beta)


def _layer_norm_shift(student):
    xp = backend.xp()
    x, g = normal((3, 5), 270), normal((3, 5), 271)
    dx, _, _ = unpack(student(copy(g), copy(x), normal((5,), 272), EPS), ("dx", "dgamma", "dbeta"))
    expect("each dx row sums to 0 (LayerNorm is unchanged by x + c)", xp.zeros(3, device=backend.device()),
           host(dx, "dx").sum(axis=-1))


def layer_norm_backward_checks():
    return [Check("dx, dγ, dβ against the reference (shapes (4, 6), (2, 3, 5))", _layer_norm_values),
            Check("the reference forward with your backward, through gradcheck (x, γ, β)", _layer_norm_gradcheck),
            Check("shift invariance: dx rows sum to 0", _layer_norm_shift)]


# ---- attention backward ---------------------------------------------------------------------------------------
class _Attention(Function):
    """The reference forward y = A v with the student's backward."""

    def forward(self, q, k, v, backward):
        self.inputs, self.student_backward = (q, k, v), backward
        return attention_backward.causal_attention_weights(q, k) @ v

    def backward(self, g):
        parts = unpack(self.student_backward(*(copy(a) for a in self.inputs), copy(g)), ("dq", "dk", "dv"))
        return tuple(backend.from_numpy(host(p, name)) for p, name in zip(parts, ("dq", "dk", "dv")))


def _attention_with_mask(q, k, v, g, offset):
    """The reference backward with keys j > t + offset − 1 masked: offset 1 is right, 2 lets key t+1 in."""
    xp = backend.xp()
    S, D = q.shape[-2], q.shape[-1]
    scores = q @ xp.matrix_transpose(k) / math.sqrt(D)
    position = xp.arange(S, device=backend.device())  # (S,)
    masked = position[None, :] >= position[:, None] + offset
    scores = xp.where(masked, -xp.inf, scores)
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
    A = e / xp.sum(e, axis=-1, keepdims=True)
    dA = g @ xp.matrix_transpose(v)
    ds = A * (dA - xp.sum(dA * A, axis=-1, keepdims=True)) / math.sqrt(D)
    return ds @ k, xp.matrix_transpose(ds) @ q, xp.matrix_transpose(A) @ g, A, ds


def _attention_wrong(q, k, v, g):
    xp = backend.xp()
    dq, dk, dv, A, ds = _attention_with_mask(q, k, v, g, 1)
    leak = _attention_with_mask(q, k, v, g, 2)
    unscaled = math.sqrt(q.shape[-1])
    off_by_one = "the mask is off by one: it lets key t + 1 through; mask exactly the keys j > t"
    return {"dq": [(leak[0], off_by_one), (ds @ k * unscaled, "the 1/√D of the scores is missing")],
            "dk": [(ds @ q, "dk uses ds, not dsᵀ (transposed): keys are the columns of the scores, dk = dsᵀ q/√D"),
                   (leak[1], off_by_one), (xp.matrix_transpose(ds) @ q * unscaled, "the 1/√D of the scores is missing")],
            "dv": [(A @ g, "dv uses A, not Aᵀ (transposed): dv = Aᵀ g"), (leak[2], off_by_one)]}


DIAGONAL_MASKED = "NaN in the first row: the mask hides the diagonal too; mask only keys j > t (a query sees itself)"


def _attention_values(student):
    for n, shape in enumerate(((4, 3), (2, 5, 2))):
        q, k, v, g = (normal(shape, 280 + 4 * n + i) for i in range(4))
        got = unpack(student(copy(q), copy(k), copy(v), copy(g)), ("dq", "dk", "dv"))
        expected = attention_backward.attention_backward(q, k, v, g)
        wrong = _attention_wrong(q, k, v, g)
        for name, e, o in zip(("dq", "dk", "dv"), expected, got):
            expect(f"{name}, shape {shape}", e, o, hints=wrong[name], nonfinite_hint=DIAGONAL_MASKED,
                   factors={math.sqrt(shape[-1]): "the 1/√D of the scores is missing"})


def _attention_gradcheck(student):
    q, k, v = (Tensor(normal((2, 4, 3), 300 + i), requires_grad=True) for i in range(3))
    _gradcheck("attention with your backward", lambda q, k, v: _Attention.apply(q, k, v, backward=student), q, k, v)


def _attention_causality(student):
    """An upstream gradient at query t alone reaches no key or value after t."""
    xp = backend.xp()
    S, t = 5, 2
    q, k, v = (normal((S, 3), 310 + i) for i in range(3))
    g = xp.where(xp.arange(S, device=backend.device())[:, None] == t, normal((S, 3), 313), 0.0)
    _, dk, dv = unpack(student(copy(q), copy(k), copy(v), g), ("dq", "dk", "dv"))
    for name, grad in (("dk", dk), ("dv", dv)):
        future = host(grad, name)[t + 1:]
        expect(f"{name} of the keys after query {t} (g is 0 except at query {t})",
               xp.zeros((S - t - 1, 3), device=backend.device()), backend.from_numpy(future), nonfinite_hint=DIAGONAL_MASKED,
               hints=[(_attention_with_mask(q, k, v, g, 2)[1 if name == "dk" else 2][t + 1:, :],
                       "the mask is off by one: key t + 1 gets a gradient; mask exactly the keys j > t")])


def attention_backward_checks():
    return [Check("dq, dk, dv against the reference (shapes (4, 3), (2, 5, 2))", _attention_values),
            Check("the reference forward with your backward, through gradcheck (q, k, v)", _attention_gradcheck),
            Check("causality: no gradient reaches a key after its query", _attention_causality)]


# ---- one AdamW step ----------------------------------------------------------------------------------------------
HYPER = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1}


def _adamw_args(t, seed, shape=(3, 4), grad_scale=1.0):
    xp = backend.xp()
    theta, grad = normal(shape, seed), normal(shape, seed + 1, grad_scale)
    m = normal(shape, seed + 2, 0.1) if t > 1 else xp.zeros(shape, device=backend.device())
    v = xp.abs(normal(shape, seed + 3, 0.1)) if t > 1 else xp.zeros(shape, device=backend.device())
    return theta, grad, m, v, t


def _adamw_wrong(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    xp = backend.xp()
    ref = adamw_step.adamw_step
    m1 = beta1 * m + (1 - beta1) * grad
    v1 = beta2 * v + (1 - beta2) * grad * grad
    no_correction = theta - lr * (m1 / (xp.sqrt(v1) + eps) + weight_decay * theta)
    eps_inside = theta - lr * (m1 / (1 - beta1**t) / xp.sqrt(v1 / (1 - beta2**t) + eps) + weight_decay * theta)
    l2 = ref(theta, grad + weight_decay * theta, m, v, t, lr, beta1, beta2, eps, 0.0)
    return {"theta": [(no_correction, "no bias correction: divide m by 1 − β₁ᵗ and v by 1 − β₂ᵗ"),
                      (l2[0], "the weight decay went into the gradient (Adam with L2): AdamW decays θ directly, "
                              "θ ← θ − lr·wd·θ, outside m and v"),
                      (eps_inside, "ε is inside the square root: use √v̂ + ε"),
                      (ref(theta, grad, m, v, t, lr, beta1, beta2, eps, 0.0)[0], "the weight decay is missing")],
            "m": [(l2[1], "the weight decay went into m: AdamW keeps it out of the moments"),
                  (beta1 * m + grad, "m ← β₁m + (1 − β₁)g: the (1 − β₁) is missing")],
            "v": [(l2[2], "the weight decay went into v: AdamW keeps it out of the moments"),
                  (beta2 * v + (1 - beta2) * grad, "v averages g², not g")]}


def _adamw_values(student):
    small = {**HYPER, "eps": 1e-3}  # gradients of 1e-3 beside ε = 1e-3: where ε sits matters
    for t, seed, grad_scale, hyper in ((1, 320, 1.0, HYPER), (2, 330, 1.0, HYPER), (10, 340, 1.0, HYPER),
                                       (3, 345, 1e-3, small)):
        args = _adamw_args(t, seed, grad_scale=grad_scale)
        got = unpack(student(*(copy(a) for a in args[:4]), t, **hyper), ("theta", "m", "v"))
        expected = adamw_step.adamw_step(*args, **hyper)
        wrong = _adamw_wrong(*args, **hyper)
        for name, e, o in zip(("theta", "m", "v"), expected, got):
            expect(f"{name} after step t = {t} (ε = {hyper['eps']:g}, |g| ~ {grad_scale:g})", e, o, hints=wrong[name])


def _adamw_first_step(student):
    """At t = 1 without decay, m̂/√v̂ = g/|g|: every coordinate moves by lr (up to ε)."""
    xp = backend.xp()
    theta, grad, m, v, _ = _adamw_args(1, 350)
    hyper = {**HYPER, "weight_decay": 0.0}
    new, _, _ = unpack(student(copy(theta), copy(grad), m, v, 1, **hyper), ("theta", "m", "v"))
    moved = theta - backend.from_numpy(host(new, "theta"))
    expect("the first step moves every coordinate by lr·sign(g)", HYPER["lr"] * xp.sign(grad), moved, tol=(1e-5, 1e-9),
           factors={(1 - HYPER["beta1"]) / math.sqrt(1 - HYPER["beta2"]):
                    "no bias correction: divide m by 1 − β₁ᵗ and v by 1 − β₂ᵗ"})


def _adamw_decay_alone(student):
    """With g = 0 and empty moments the update is the decoupled decay alone: θ ← θ(1 − lr·wd)."""
    xp = backend.xp()
    theta = normal((4,), 360)
    zeros = xp.zeros((4,), device=backend.device())
    new, _, _ = unpack(student(copy(theta), zeros, zeros, zeros, 1, **HYPER), ("theta", "m", "v"))
    expect("g = 0: θ ← θ·(1 − lr·wd)", theta * (1 - HYPER["lr"] * HYPER["weight_decay"]), new,
           nonfinite_hint="0/0 at g = 0: ε belongs outside the square root, √v̂ + ε")


def adamw_step_checks():
    return [Check("θ, m, v against the reference at steps t = 1, 2, 10, and 3 with small gradients", _adamw_values),
            Check("bias correction: the first step moves each coordinate by lr", _adamw_first_step),
            Check("decoupled decay: with g = 0, θ ← θ·(1 − lr·wd)", _adamw_decay_alone)]
