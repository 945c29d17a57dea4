"""Hidden-state distillation: the student's residual streams pulled toward the teacher's.

For a layer map M of pairs (i, j), student stream i (0 = embeddings, k = after block k) is mapped
to the teacher's width by a learned projection P_k (only where the widths differ) and compared with
teacher stream j:  L = L_pred + μ·(1/|M|)·Σ_k MSE(P_k(h_s,i), h_t,j),  where L_pred is the
prediction-layer objective of ``Distiller``. The projections train with the student.
"""

import math

from minikd.engine import backend, validate
from minikd.engine.autograd import Function, Tensor, data_of
from minikd.recipes.distill import Distiller
from minikd.recipes.teacher import teacher_logits
from minikd.nn.modules import Linear, Module

PROJECTION_STREAM = 3_000_017  # the projections' initial weights: a stream apart from the model's


class MSELoss(Function):
    def forward(self, x, target):
        self.diff = x - target  # the target is a raw array: no gradient reaches the teacher
        return backend.xp().sum(self.diff * self.diff) / self.diff.size

    def backward(self, g):
        """L = (1/N)·Σ (x − t)²: dL/dx = 2(x − t)/N."""
        return (g * (2.0 / self.diff.size) * self.diff,)


def mse(x, target):
    """Mean squared error between a Tensor x and a fixed target array of the same shape."""
    target = data_of(target)
    if data_of(x).shape != target.shape:
        raise ValueError(f"mse needs equal shapes: x has shape {tuple(data_of(x).shape)}, "
                         f"target has shape {tuple(target.shape)}")
    return MSELoss.apply(x if isinstance(x, Tensor) else Tensor(x), target=target)


def default_layer_map(student_layers, teacher_layers):
    """Student stream i ↔ teacher stream ⌊i·L_t/L_s⌋ for i = 1..L_s: the last block matches the last block
    (with L_t = 2·L_s this is block i ↔ block 2i)."""
    return tuple((i, i * teacher_layers // student_layers) for i in range(1, student_layers + 1))


def check_layer_map(layer_map, student_layers, teacher_layers):
    """Pairs (i, j) with 0 ≤ i ≤ L_s and 0 ≤ j ≤ L_t (there are L + 1 streams); else a ValueError."""
    pairs = tuple(tuple(pair) for pair in layer_map)
    if not pairs:
        raise ValueError("layer_map is empty: name at least one (student stream, teacher stream) pair")
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(k, int) and not isinstance(k, bool) for k in pair):
            raise ValueError(f"layer_map entries must be pairs of integers, got {pair!r}")
        (i, j), bad = pair, None
        if not 0 <= i <= student_layers:
            bad = f"student stream {i}: the student has streams 0..{student_layers}"
        elif not 0 <= j <= teacher_layers:
            bad = f"teacher stream {j}: the teacher has streams 0..{teacher_layers}"
        if bad:
            raise ValueError(f"layer_map pair {pair} points past the last layer ({bad}, 0 = embeddings)")
    return pairs


def parse_layer_map(text):
    """``"1:2,2:4"`` -> ((1, 2), (2, 4)); a ValueError names a malformed entry."""
    pairs = []
    for entry in text.split(","):
        try:
            i, j = entry.split(":")
            pairs.append((int(i), int(j)))
        except ValueError:
            raise ValueError(f"layer map entries must be STUDENT:TEACHER stream numbers, got {entry!r}") from None
    return tuple(pairs)


class Projections(Module):
    """One learned linear map (C_s -> C_t) per layer pair when the widths differ; none when they match."""

    def __init__(self, n_pairs, student_width, teacher_width, seed, dtype):
        rng = backend.host_rng(seed, PROJECTION_STREAM)
        std = 1.0 / math.sqrt(student_width)  # keeps the scale of the stream
        self.maps = ([Linear(student_width, teacher_width, rng, dtype, std=std) for _ in range(n_pairs)]
                     if student_width != teacher_width else [])

    def forward(self, k, h):
        return self.maps[k](h) if self.maps else h  # (B, S, C_s) -> (B, S, C_t)


class HiddenDistiller:
    """A ``train`` loss function: the ``Distiller`` objective plus μ times the hidden-state MSE.

    Pass ``extra=distiller.projections`` to ``train`` so the projections are optimized and saved.
    """

    def __init__(self, teacher, student, config, steps, mu=1.0, layer_map=None, seed=0):
        student_config, teacher_config = student.config, teacher.config
        if not (math.isfinite(validate.check_real("hidden-state weight mu", mu)) and mu >= 0):
            raise ValueError(f"hidden-state weight mu must be a finite number >= 0, got {mu!r}")
        self.prediction = Distiller(teacher, config, steps, seed)
        self.pairs = check_layer_map(layer_map or default_layer_map(student_config.n_layer, teacher_config.n_layer),
                                     student_config.n_layer, teacher_config.n_layer)
        self.projections = Projections(len(self.pairs), student_config.n_embd, teacher_config.n_embd, seed,
                                       student_config.dtype)
        self.mu = float(mu)

    def __call__(self, student, x, y, step):
        z, student_streams = student(x, return_hidden=True)
        v, teacher_streams = teacher_logits(self.prediction.teacher, x, self.prediction.config.teacher_bias,
                                            return_hidden=True)
        loss = self.prediction.loss(z, v, y, step)
        if self.mu == 0.0:
            return loss
        return loss + self.mu * self.hidden_loss(student_streams, teacher_streams)

    def hidden_loss(self, student_streams, teacher_streams):
        """(1/|M|)·Σ_k MSE(P_k(h_s,i), h_t,j) over the layer map."""
        terms = [mse(self.projections(k, student_streams[i]), teacher_streams[j])
                 for k, (i, j) in enumerate(self.pairs)]
        return sum(terms[1:], terms[0]) / len(terms)

    def describe(self, step):
        return {**self.prediction.describe(step), "mu": self.mu}
