"""Sharpness of a loss at a model's weights: the top Hessian eigenvalue (power iteration) and the
Hessian's trace (Hutchinson's estimator), the two numbers PyHessian reports, and the 1-D slice
along the top eigenvector beside a random direction.

Both need only Hessian-vector products, here central differences of gradients computed in float64:

    H·v ≈ [∇L(θ + h·v) − ∇L(θ − h·v)] / 2h,   ‖v‖ = 1.

Why that is enough: the truncation error is O(h²·‖∇³L‖) and the rounding error O(ε·‖∇L‖/h).
In float64 (ε ≈ 1e-16) with h = 1e-4 both are around 1e-8 relative, far below what power
iteration or a trace estimate from a few dozen samples resolves. In float32 (ε ≈ 6e-8) the rounding
term alone would be about 1e-3 relative at that h, and a larger h raises the truncation error:
hence the float64 copy of the weights. The price is two gradients per product and no second-order
autograd. Any loss with ``names`` and ``parts(model)`` (see ``landscape.WindowLoss``) works; the
Hessian is that of the sum of its terms.
"""

import contextlib
import math

from minikd.engine import backend
from minikd.tools.landscape import filter_normalized_direction, loss_grid, parameters


@contextlib.contextmanager
def float64_weights(model):
    """Inside the block the parameters are float64 copies (and float64 is the default dtype); the
    original arrays and gradients are put back afterwards, whatever happens. Yields {name: Tensor}."""
    xp = backend.xp()
    params = parameters(model)
    saved = {name: (p.data, p.grad) for name, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        with backend.default_dtype_as("float64"):
            for p in params.values():
                p.data = xp.astype(p.data, xp.float64)
            yield params
    finally:
        for name, p in params.items():
            p.data, p.grad = saved[name]
        model.train(was_training)


def _dot(u, v):
    """Σ over every parameter of u·v, as a Python float (one scalar from the device)."""
    xp = backend.xp()
    return float(backend.to_numpy(sum(xp.sum(u[name] * v[name]) for name in u)))


def _scaled(v, factor):
    return {name: factor * value for name, value in v.items()}


def _gradient(model, params, loss, theta):
    """∇ Σ_batches weight·(sum of the batch's terms) at weights ``theta`` ({name: array})."""
    xp = backend.xp()
    for name, p in params.items():
        p.data, p.grad = theta[name], None
    for weight, terms in loss.parts(model):
        values = list(terms.values())
        total = values[0]
        for value in values[1:]:
            total = total + value
        total.backward(weight)  # accumulates weight·∇(batch loss) into every p.grad
    return {name: xp.zeros_like(p.data) if p.grad is None else p.grad for name, p in params.items()}


def hessian_vector_product(model, params, loss, theta, v, step=1e-4):
    """H(θ)·v by central differences of float64 gradients (inside ``float64_weights``)."""
    plus = _gradient(model, params, loss, {n: theta[n] + step * v[n] for n in theta})
    minus = _gradient(model, params, loss, {n: theta[n] - step * v[n] for n in theta})
    return {name: (plus[name] - minus[name]) / (2.0 * step) for name in theta}


def _unit(v):
    return _scaled(v, 1.0 / math.sqrt(_dot(v, v)))


def _gaussian(params, seed, key):
    xp = backend.xp()
    rng = backend.host_rng(seed, key)
    return {name: xp.astype(backend.from_numpy(rng.standard_normal(p.shape)), xp.float64) for name, p in params.items()}


def top_eigenvalue(model, loss, seed=0, iterations=50, tol=1e-4, step=1e-4):
    """The Hessian eigenvalue of largest magnitude at the current weights, by power iteration.

    v ← Hv/‖Hv‖ from a seeded Gaussian start; the estimate is the Rayleigh quotient vᵀHv, stopped
    when it changes by less than ``tol`` (relative) or after ``iterations`` products. At a minimum
    the Hessian is (nearly) positive semi-definite and this is λ_max; elsewhere it may be negative.
    Returns {"eigenvalue", "vector" ({name: float64 array}, unit length), "iterations", "converged"}.
    """
    with float64_weights(model) as params:
        theta = {name: p.data for name, p in params.items()}
        v, estimate, vector, converged, used = _unit(_gaussian(params, seed, 0)), None, None, False, 0
        for used in range(1, iterations + 1):
            hv = hessian_vector_product(model, params, loss, theta, v, step)
            rayleigh, length = _dot(v, hv), math.sqrt(_dot(hv, hv))
            converged = estimate is not None and abs(rayleigh - estimate) <= tol * abs(rayleigh)
            estimate, vector = rayleigh, v  # the vector whose Rayleigh quotient is the estimate
            if converged or length == 0.0:  # length 0: H·v = 0, the loss is flat along v
                converged = True
                break
            v = _scaled(hv, 1.0 / length)
    return {"eigenvalue": estimate, "vector": vector, "iterations": used, "converged": converged}


def hutchinson_trace(model, loss, samples=20, seed=0, step=1e-4):
    """tr(H) ≈ mean of zᵀHz over Rademacher vectors z (entries ±1, drawn from ``host_rng(seed, 1, k)``).

    Unbiased, E[zᵀHz] = tr(H), with variance 2·Σ_{i≠j} H_ij² per sample; returns (estimate, its
    standard error from the samples' spread).
    """
    xp = backend.xp()
    estimates = []
    with float64_weights(model) as params:
        theta = {name: p.data for name, p in params.items()}
        for k in range(samples):
            rng = backend.host_rng(seed, 1, k)
            z = {name: xp.astype(backend.from_numpy(rng.integers(0, 2, p.shape) * 2.0 - 1.0), xp.float64)
                 for name, p in params.items()}
            length = math.sqrt(_dot(z, z))  # a unit step keeps the finite difference's error as stated
            hz = hessian_vector_product(model, params, loss, theta, _scaled(z, 1.0 / length), step)
            estimates.append(_dot(z, hz) * length)
    mean = sum(estimates) / samples
    spread = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (samples - 1)) if samples > 1 else math.nan
    return mean, spread / math.sqrt(samples)


def sharpness(model, loss, seed=0, iterations=50, samples=20, tol=1e-4):
    """{"top_eigenvalue", "trace", "trace_stderr", "iterations", "converged"} and the unit eigenvector
    (key "vector", left out of landscape.json) of the loss's Hessian at the model's weights."""
    top = top_eigenvalue(model, loss, seed=seed, iterations=iterations, tol=tol)
    trace, stderr = hutchinson_trace(model, loss, samples=samples, seed=seed)
    return {"top_eigenvalue": top["eigenvalue"], "trace": trace, "trace_stderr": stderr,
            "iterations": top["iterations"], "converged": top["converged"], "vector": top["vector"]}


def unit_random_direction(model, seed):
    """The filter-normalised random direction of ``seed`` (index 0) rescaled to unit length, so a
    slice along it shares the α axis with one along the unit eigenvector."""
    return _unit(filter_normalized_direction(model, seed))


def slice_axis(eigenvalue, points=41):
    """α ∈ [−r, r] with r = √(2/λ): where the quadratic model ½λα² along the top eigenvector has
    risen by 1 nat (r = 1 when λ ≤ 0). A host array of ``points`` values, 0 in the middle."""
    radius = math.sqrt(2.0 / eigenvalue) if eigenvalue > 0 else 1.0
    return backend.host_xp().linspace(-radius, radius, points)


def slice_directions(model, result, seed):
    """{"top eigenvector": v, "random direction": u}: both of unit length, in the model's dtype."""
    xp = backend.xp()
    params = parameters(model)
    unit = {"top eigenvector": result["vector"], "random direction": unit_random_direction(model, seed)}
    return {label: {name: xp.astype(value, params[name].dtype) for name, value in d.items()}
            for label, d in unit.items()}


def eigen_slices(model, loss, result, seed, alphas):
    """({label: values}, {label: {"slice": …, "hessian": …}}): the loss (the sum of its terms) along
    the unit top eigenvector of ``result`` (from ``sharpness``) and along a unit random direction,
    and the curvature of each slice at 0 measured twice: "slice", the second difference of the
    slice's own losses around α = 0 (``alphas`` odd and symmetric), and "hessian", dᵀHd from one
    float64 Hessian-vector product (the slice's float32 losses cannot resolve a random
    direction's small curvature; the eigenvector's they can, which checks λ_max independently)."""
    along, curvature = {}, {}
    for label, d in slice_directions(model, result, seed).items():
        along[label] = loss_grid(model, loss, [d], [alphas]).sum(axis=-1)
        curvature[label] = {"slice": slice_curvature(alphas, along[label]),
                            "hessian": directional_curvature(model, loss, d)}
    return along, curvature


def directional_curvature(model, loss, direction):
    """dᵀHd / dᵀd: the second derivative at 0 of α ↦ L(θ + α·d/‖d‖), in float64."""
    xp = backend.xp()
    with float64_weights(model) as params:
        theta = {name: p.data for name, p in params.items()}
        d = _unit({name: xp.astype(value, xp.float64) for name, value in direction.items()})
        return _dot(d, hessian_vector_product(model, params, loss, theta, d))


def slice_curvature(alphas, values):
    """f''(0) from a slice by the second difference around its centre: (f(h) − 2f(0) + f(−h)) / h²."""
    centre = len(alphas) // 2
    if len(alphas) % 2 == 0 or abs(alphas[centre]) > 1e-12 * max(abs(alphas[0]), abs(alphas[-1])):
        raise ValueError("slice_curvature needs an odd number of points symmetric about 0")
    h = alphas[centre + 1] - alphas[centre]
    return float((values[centre + 1] - 2.0 * values[centre] + values[centre - 1]) / (h * h))
