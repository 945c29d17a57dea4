"""Loss landscapes: the loss along filter-normalised random directions in parameter space (Li et al., 2018).

A direction d has one entry per parameter. Filter normalisation rescales each row of a weight
matrix (one output unit, a "filter") to the norm of the same row of the trained weights, so that
directions are comparable across layers and models; vectors (biases, LayerNorm gains) get 0.
"""

from minikd.engine import backend
from minikd.engine.autograd import no_grad


def filter_normalized_direction(model, seed):
    """A random direction {name: array} for ``model``, each row scaled to its weights' row norm."""
    xp = backend.xp()
    rng = backend.rng(seed)
    direction = {}
    for name, p in model.named_parameters():
        if p.ndim < 2:
            direction[name] = xp.zeros_like(p.data)
            continue
        d = xp.astype(rng.standard_normal(p.shape), p.dtype)
        rows = (p.ndim - 1,)
        d *= xp.linalg.vector_norm(p.data, axis=rows, keepdims=True) / xp.linalg.vector_norm(d, axis=rows, keepdims=True)
        direction[name] = d
    return direction


def loss_grid(model, loss_fn, directions, coordinates):
    """``loss_fn()`` at θ + Σ_k c_k·d_k for each tuple c in ``coordinates``; the weights are restored.

    ``directions`` is a list of directions (one for a 1-D slice, two for a 2-D surface); returns a
    list of floats in the order of ``coordinates``.
    """
    params = dict(model.named_parameters())
    original = {name: backend.xp().asarray(p.data, copy=True) for name, p in params.items()}
    losses = []
    try:
        with no_grad():
            for c in coordinates:
                for name, p in params.items():
                    p.data = original[name] + sum(float(ck) * d[name] for ck, d in zip(c, directions))  # float: a NumPy scalar would pull d to the host
                losses.append(float(loss_fn()))
    finally:
        for name, p in params.items():
            p.data = original[name]
    return losses
