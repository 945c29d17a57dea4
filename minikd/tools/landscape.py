"""Loss landscapes: the loss around a model's weights, along filter-normalised random directions
(Li et al., 2018), on planes of two of them, and on the straight line between two models
(Goodfellow, Vinyals & Saxe, 2015).

Every picture is ``losses_at(model, loss, points)``: the weights are set to each point in turn, the
loss is evaluated in batches without a graph, and the model's own arrays are put back afterwards,
also when the loss raises or the run is interrupted (Ctrl-C). Results are host arrays (NumPy), one
column per quantity the loss reports (``loss.names``).
"""

from tqdm.auto import tqdm

from minikd.engine import backend, validate
from minikd.engine.autograd import no_grad
from minikd.losses import functional as F
from minikd.losses.divergences import DIVERGENCES
from minikd.losses.functional import FORMS
from minikd.recipes.teacher import teacher_logits
from minikd.tasks.data import IGNORE_INDEX

WHATS = ("ce", "objective", "terms")  # what is sliced: held-out CE, the KD objective, or its two terms


class WindowLoss:
    """The quantity sliced, on fixed windows (x, y) of shape (B, S), evaluated in batches of rows.

    - ``what="ce"``: the held-out cross-entropy, mean over scored positions;
    - ``what="objective"``: ``distillation_loss`` against the frozen ``teacher`` (λ, T, divergence, form);
    - ``what="terms"``: its two terms as they enter the objective, hard = (1 − λ)·CE (CE in the additive
      form) and soft = λ·s·D with s = T² (``scale_T2``) or 1; they add up to the objective.

    A batch's mean enters with weight n_b / N (its share of the N scored positions), so the value is
    the mean over all windows whatever ``batch_size`` is. The teacher's logits are computed once.
    """

    def __init__(self, x, y, what="ce", teacher=None, lam=0.5, T=2.0, divergence="forward_kl", beta=0.5,
                 form="interpolate", scale_T2=True, batch_size=64):
        self.what = validate.check_choice("what", what, WHATS)
        validate.check_positive_int("batch_size", batch_size)
        if (what == "ce") != (teacher is None):
            raise ValueError(f"what={what!r} " + ("takes no teacher" if what == "ce" else "needs a teacher"))
        self.form = validate.check_choice("form", form, FORMS)
        self.divergence = validate.check_choice("divergence", divergence, tuple(DIVERGENCES))
        self.T, self.lam = validate.check_temperature(T), validate.check_lam(lam, form)
        self.beta, self.scale_T2 = beta, scale_T2
        n_windows = x.shape[0]
        bounds = [(k, min(k + batch_size, n_windows)) for k in range(0, n_windows, batch_size)]  # stops in range
        self.batches = [(x[start:stop, ...], y[start:stop, ...]) for start, stop in bounds]
        xp = backend.xp()
        counts = [int(backend.to_numpy(xp.sum(xp.astype(yb != IGNORE_INDEX, xp.int64)))) for _, yb in self.batches]
        if sum(counts) == 0:
            raise ValueError("the evaluation windows hold no scored position")
        self.weights = [n / sum(counts) for n in counts]
        self.teacher_logits = [None if teacher is None else teacher_logits(teacher, xb) for xb, _ in self.batches]

    @property
    def names(self):
        """The quantities this loss reports, one column of every grid."""
        return {"ce": ("held-out CE",), "objective": ("KD objective",), "terms": ("hard term", "soft term")}[self.what]

    @property
    def ylabel(self):
        return "cross-entropy (nats/token)" if self.what == "ce" else "loss (nats/token)"

    def batch_terms(self, model, k):
        """{name: scalar Tensor} for batch k (a graph is recorded unless under ``no_grad``)."""
        x, y = self.batches[k]
        z = model(x)  # (b, S, V)
        if self.what == "ce":
            return {"held-out CE": F.cross_entropy(z, y, ignore_index=IGNORE_INDEX)}
        v = self.teacher_logits[k]
        options = dict(T=self.T, divergence=self.divergence, beta=self.beta, scale_T2=self.scale_T2,
                       ignore_index=IGNORE_INDEX)
        if self.what == "objective":
            return {"KD objective": F.distillation_loss(z, v, y, lam=self.lam, form=self.form, **options)}
        hard_weight = 1.0 - self.lam if self.form == "interpolate" else 1.0
        soft = F.distillation_loss(z, v, y, lam=1.0, form="interpolate", **options)  # s·D alone
        return {"hard term": F.cross_entropy(z, y, ignore_index=IGNORE_INDEX) * hard_weight,
                "soft term": soft * self.lam}

    def parts(self, model):
        """(weight, terms) for every batch: the loss is Σ weight·terms."""
        for k, weight in enumerate(self.weights):
            yield weight, self.batch_terms(model, k)

    def __call__(self, model):
        """The values (len(names),) as a host array; one transfer from the device per call."""
        xp = backend.xp()
        totals = {name: 0.0 for name in self.names}
        with no_grad():
            for weight, terms in self.parts(model):
                for name in self.names:
                    totals[name] = totals[name] + weight * terms[name].data
        return backend.to_numpy(xp.stack([xp.asarray(totals[name]) for name in self.names]))


def parameters(model):
    """{name: Tensor} of the model's parameters, each shared Tensor once."""
    seen, params = set(), {}
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            params[name] = p
    return params


def losses_at(model, loss, points, total=None, progress=False, desc="landscape"):
    """``loss(model)`` with the weights set to each point ({name: array}, every parameter) in turn.

    Returns a host array (n_points, len(loss.names)). The model runs in evaluation mode; its own
    arrays (not copies) are put back afterwards, so the weights are restored bit for bit, also when
    ``loss`` raises or the loop is interrupted. A progress bar appears after 2 s when ``progress``.
    """
    np = backend.host_xp()
    params = parameters(model)
    saved = {name: p.data for name, p in params.items()}
    was_training = model.training
    values = []
    model.eval()
    try:
        for point in tqdm(points, total=total, disable=not progress, desc=desc, unit="point", delay=2.0):
            for name, p in params.items():
                p.data = point[name]
            values.append(loss(model))
    finally:
        for name, p in params.items():
            p.data = saved[name]
        model.train(was_training)
    return np.stack(values) if values else np.zeros((0, len(loss.names)))


def filter_normalize(direction, weights):
    """``direction`` with each row (last axis: one output unit, a "filter") rescaled to the norm of
    the same row of ``weights``: d_r ← d_r·‖θ_r‖/‖d_r‖. A vector (bias, LayerNorm gain) gets zeros."""
    xp = backend.xp()
    if weights.ndim < 2:
        return xp.zeros_like(weights)
    d_norm = xp.sqrt(xp.sum(direction * direction, axis=-1, keepdims=True))  # (..., 1): one norm per row
    theta_norm = xp.sqrt(xp.sum(weights * weights, axis=-1, keepdims=True))
    return direction * (theta_norm / d_norm)


def filter_normalized_direction(model, seed, index=0):
    """A random direction {name: array} for ``model``, filter-normalised to its weights.

    The Gaussian draws come from ``host_rng(seed, index)`` in parameter order, so every model of
    the same architecture gets the same raw direction for the same (seed, index), on any backend;
    ``index`` tells apart the directions of one plane.
    """
    xp = backend.xp()
    rng = backend.host_rng(seed, index)
    direction = {}
    for name, p in parameters(model).items():
        draw = xp.astype(backend.from_numpy(rng.standard_normal(p.shape)), p.dtype)
        direction[name] = filter_normalize(draw, p.data)
    return direction


def directions(model, seed, dims):
    """``dims`` filter-normalised directions, indices 0 … dims − 1 of ``seed``."""
    return [filter_normalized_direction(model, seed, index=k) for k in range(dims)]


def loss_grid(model, loss, directions, axes, progress=False):
    """The loss at θ + Σ_k c_k·d_k for every c in the grid ``axes[0] × axes[1] × …`` (one axis per direction).

    Returns a host array of shape (len(axes[0]), …, len(axes[-1]), len(loss.names)) ("ij" indexing:
    entry [i, j] is at (axes[0][i], axes[1][j])). The centre θ is the model's current weights.
    """
    np = backend.host_xp()
    if len(axes) != len(directions):
        raise ValueError(f"loss_grid needs one axis per direction, got {len(axes)} axes for {len(directions)}")
    centre = {name: p.data for name, p in parameters(model).items()}
    coordinates = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))

    def points():
        for c in coordinates:
            yield {name: _combine(theta, [(float(ck), d[name]) for ck, d in zip(c, directions)])
                   for name, theta in centre.items()}

    values = losses_at(model, loss, points(), total=len(coordinates), progress=progress)
    return values.reshape(*(len(a) for a in axes), len(loss.names))


def _combine(theta, steps):
    """θ + Σ c·d, leaving θ itself untouched (a fresh array)."""
    result = theta
    for c, d in steps:
        result = result + c * d
    return result


def check_same_architecture(model_a, model_b):
    """Two models can be interpolated only if they have the same parameters with the same shapes."""
    a, b = parameters(model_a), parameters(model_b)
    if list(a) != list(b) or any(tuple(a[n].shape) != tuple(b[n].shape) for n in a):
        differ = next((n for n in a if n not in b or tuple(a[n].shape) != tuple(b[n].shape)), None)
        detail = (f"{differ!r} is {tuple(a[differ].shape)} in A and "
                  f"{tuple(b[differ].shape) if differ in b else 'missing'} in B") if differ else "different parameters"
        raise ValueError(f"--path needs two models of the same architecture: {detail}")
    if getattr(model_a, "config", None) is not None and model_a.config.n_head != model_b.config.n_head:
        raise ValueError(f"--path needs two models of the same architecture: n_head is {model_a.config.n_head} "
                         f"in A and {model_b.config.n_head} in B")


def linear_path(model_a, model_b, loss, ts, progress=False):
    """The loss at (1 − t)·θ_A + t·θ_B for each t (any real t: beyond [0, 1] extrapolates).

    Evaluated in ``model_a`` (restored afterwards); t = 0 and t = 1 are exactly θ_A and θ_B.
    Returns a host array (len(ts), len(loss.names)).
    """
    check_same_architecture(model_a, model_b)
    theta_a = {name: p.data for name, p in parameters(model_a).items()}
    theta_b = {name: p.data for name, p in parameters(model_b).items()}

    def points():
        for t in ts:
            t = float(t)
            yield {name: (1.0 - t) * theta_a[name] + t * theta_b[name] for name in theta_a}

    return losses_at(model_a, loss, points(), total=len(ts), progress=progress, desc="path")


def minima(axes, grid, names):
    """{name: {"loss": lowest value, "at": its coordinates}} of a grid from ``loss_grid``."""
    np = backend.host_xp()
    result = {}
    for k, name in enumerate(names):
        values = grid[..., k]
        where = np.unravel_index(int(np.argmin(values)), values.shape)
        result[name] = {"loss": float(values[where]), "at": [float(axis[i]) for axis, i in zip(axes, where)]}
    return result
