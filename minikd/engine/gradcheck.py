"""Check an autograd gradient against central finite differences in float64.

A vector-valued function is reduced to a scalar through a random cotangent w, L = Σ f(x)·w,
never a plain sum (the sum of a softmax is the constant 1, so its gradient is zero whatever the
backward does). Every element of every input that requires grad is perturbed.
"""

from dataclasses import dataclass

from minikd.engine import backend
from minikd.engine.autograd import Tensor, no_grad


@dataclass
class GradcheckReport:
    """The largest errors found, and the element nearest to failing (largest error / tolerance)."""

    max_abs_error: float
    max_rel_error: float
    worst_input: int  # position of the input in the call's arguments
    worst_index: tuple  # the element of that input
    analytic: float
    numeric: float
    checked: int  # number of elements compared

    def __str__(self):
        return (f"max abs error {self.max_abs_error:.3e}, max rel error {self.max_rel_error:.3e} "
                f"over {self.checked} elements; worst: input {self.worst_input} at {self.worst_index}, "
                f"autograd {self.analytic:.10g} vs finite differences {self.numeric:.10g}")


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when autograd and finite differences disagree; carries the report."""

    def __init__(self, report):
        super().__init__(f"gradient check failed: {report}")
        self.report = report


def _as_float64(x):
    """Float Tensors become float64 leaf copies (keeping requires_grad); anything else is passed through."""
    if isinstance(x, Tensor) and backend.is_float_dtype(x.dtype):
        return Tensor(backend.xp().astype(x.data, backend.dtype("float64")), requires_grad=x.requires_grad)
    return x


def _numeric_gradient(objective, x, eps):
    """Central differences (f(x + eps·e_k) − f(x − eps·e_k)) / 2eps for every element k of ``x.data``.

    Each perturbed input is made on the host and copied to the device (no in-place view writes,
    which not every array library shares); ``x.data`` is restored at the end.
    """
    original = x.data
    values = backend.to_numpy(original).reshape(-1)  # (n,) host copy
    numeric = []
    try:
        for k in range(values.size):
            evaluations = []
            for step in (eps, -eps):
                perturbed = values.copy()
                perturbed[k] += step
                x.data = backend.from_numpy(perturbed.reshape(original.shape))
                evaluations.append(objective())
            numeric.append((evaluations[0] - evaluations[1]) / (2 * eps))
    finally:
        x.data = original
    return numeric


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0):
    """Compare the autograd gradient of ``Σ fn(*inputs)·w`` with central differences, in float64.

    ``fn`` maps the inputs to a Tensor; ``w`` is a seeded random cotangent of its shape. Float
    Tensor inputs are copied to float64 first. An element passes when
    ``|analytic − numeric| <= atol + rtol·|numeric|``. Returns a GradcheckReport; raises
    GradcheckError carrying the report when any element fails.
    """
    xp = backend.xp()
    args = [_as_float64(x) for x in inputs]
    checked = [i for i, x in enumerate(args) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck needs at least one input Tensor with requires_grad=True")
    with backend.default_dtype_as("float64"):
        result = fn(*args)
        if not isinstance(result, Tensor):
            raise TypeError(f"fn must return a Tensor, got {type(result).__name__}")
        cotangent = (backend.rng(seed).standard_normal(result.shape) if result.ndim
                     else xp.ones((), dtype=result.dtype, device=backend.device()))
        result.backward(cotangent)

        def objective():
            with no_grad():
                return float(xp.sum(fn(*args).data * cotangent))

        max_abs = max_rel = 0.0
        worst, worst_ratio, count = None, -1.0, 0
        for i in checked:
            x = args[i]
            analytic = (backend.host_xp().zeros(x.size) if x.grad is None
                        else backend.to_numpy(x.grad).reshape(-1))
            for k, numeric in enumerate(_numeric_gradient(objective, x, eps)):
                error = abs(float(analytic[k]) - numeric)
                max_abs = max(max_abs, error)
                max_rel = max(max_rel, error / max(abs(numeric), atol))  # relative where not tiny
                ratio = error / (atol + rtol * abs(numeric))  # > 1 fails
                if ratio > worst_ratio:
                    worst = (i, backend.unravel_index(k, x.shape), float(analytic[k]), numeric)
                    worst_ratio = ratio
                count += 1
    report = GradcheckReport(max_abs, max_rel, *worst, checked=count)
    if worst_ratio > 1.0:
        raise GradcheckError(report)
    return report


@dataclass
class DirectionalReport:
    """Autograd's ⟨∇L, d⟩ beside the central difference (L(θ + εd) − L(θ − εd)) / 2ε."""

    analytic: float
    numeric: float
    rel_error: float
    n_params: int  # scalar parameters moved together

    def __str__(self):
        return (f"directional derivative over {self.n_params} parameters: autograd {self.analytic:.10g} vs "
                f"finite differences {self.numeric:.10g} (rel error {self.rel_error:.2e})")


def directional_gradcheck(loss_fn, params, eps=1e-6, rtol=1e-6, seed=0):
    """Check the gradient of a scalar ``loss_fn()`` w.r.t. all ``params`` at once, along one random direction.

    Where ``gradcheck`` perturbs each element, this moves every parameter together along a seeded
    random direction d, so a whole model is checked in three evaluations. The parameters should be
    float64; their values are restored afterwards. Raises GradcheckError when
    |analytic − numeric| > rtol·max(|numeric|, 1e-12).
    """
    xp = backend.xp()
    params = list({id(p): p for p in params}.values())
    rng = backend.rng(seed)
    directions = [xp.astype(rng.standard_normal(p.shape), p.dtype) for p in params]
    for p in params:
        p.zero_grad()
    loss_fn().backward()
    analytic = float(sum(xp.sum(p.grad * d) for p, d in zip(params, directions) if p.grad is not None))
    originals = [p.data for p in params]  # each move assigns a new array, so these stay as they are

    def moved(sign):
        for p, original, d in zip(params, originals, directions):
            p.data = original + sign * eps * d
        with no_grad():
            return float(loss_fn().data)

    try:
        numeric = (moved(+1) - moved(-1)) / (2 * eps)
    finally:
        for p, original in zip(params, originals):
            p.data = original
    rel_error = abs(analytic - numeric) / max(abs(numeric), 1e-12)
    report = DirectionalReport(analytic, numeric, rel_error, sum(p.size for p in params))
    if rel_error > rtol:
        raise GradcheckError(report)
    return report
