"""Token-level distillation: a frozen teacher, a student, and the combined objective with schedules.

Per step: teacher logits under ``no_grad`` (the teacher is in evaluation mode and never sees an
optimizer), then ``distillation_loss(student(x), teacher(x), y, lam=λ(t), T=T(t))``. λ and T follow
schedules over the steps. Two knobs for the practical questions: ``label_noise`` corrupts a fraction
of the ground-truth labels, ``teacher_bias`` makes the teacher prefer a wrong token in one context.
"""

import math
from dataclasses import asdict, dataclass

from minikd.engine import backend, validate
from minikd.nn import schedules
from minikd.losses import functional as F
from minikd.recipes.teacher import teacher_logits
from minikd.tasks.data import IGNORE_INDEX
from minikd.losses.divergences import DIVERGENCES
from minikd.losses.functional import FORMS


@dataclass(frozen=True)
class DistillConfig:
    lam: float = 0.5  # weight of the distillation term at step 0
    T: float = 2.0
    divergence: str = "forward_kl"  # or "reverse_kl", "jsd"
    form: str = "interpolate"  # (1 − λ)·CE + λ·T²·D, or the additive CE + λ·T²·D
    beta: float = 0.5  # JSD mixture weight
    lam_schedule: str = "constant"  # constant, linear, cosine, step: from lam to lam_end
    lam_end: float = 0.0
    T_schedule: str = "constant"  # from T to T_end
    T_end: float = 1.0
    label_noise: float = 0.0  # fraction of ground-truth labels replaced by a random token
    teacher_bias: tuple = ()  # (context token, wrong token, logit bonus): a systematic teacher error

    def __post_init__(self):
        validate.check_choice("form", self.form, FORMS)
        validate.check_choice("divergence", self.divergence, tuple(DIVERGENCES))
        for name in ("lam", "lam_end"):  # NumPy scalars become Python floats (they are saved as JSON)
            object.__setattr__(self, name, validate.check_lam(getattr(self, name), self.form, name))
        for name in ("T", "T_end"):
            object.__setattr__(self, name, validate.check_temperature(getattr(self, name), name))
        for name in ("lam_schedule", "T_schedule"):
            validate.check_choice(name, getattr(self, name), schedules.KINDS)
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be a fraction in [0, 1], got {self.label_noise!r}")
        if self.teacher_bias and len(self.teacher_bias) != 3:
            raise ValueError(f"teacher_bias must be (context token, wrong token, bonus), got {self.teacher_bias!r}")

    def schedules(self, steps):
        """(λ(t), T(t)) as schedule callables over ``steps`` steps."""
        return (schedules.make(self.lam_schedule, self.lam, self.lam_end, steps),
                schedules.make(self.T_schedule, self.T, self.T_end, steps))

    def to_dict(self):
        return asdict(self)


def corrupt_labels(y, fraction, vocab_size, seed, step):
    """Replace each scored label, with probability ``fraction``, by a uniformly random token (seeded by step)."""
    if fraction == 0.0:
        return y
    rng = backend.rng(seed, 1_000_003, step)  # a stream apart from the batches'
    noisy = backend.xp().astype(rng.integers(0, vocab_size, y.shape), y.dtype)
    flip = (rng.random(y.shape) < fraction) & (y != IGNORE_INDEX)
    return backend.xp().where(flip, noisy, y)


class Distiller:
    """The loss function ``train`` calls each step: ``distiller(student, x, y, step)``.

    ``cache`` (a ``TeacherCache`` of this teacher and teacher_bias) shares the teacher's logits of each
    step with the other students trained on the same batches; the loss is the same bit for bit.
    """

    def __init__(self, teacher, config, steps, seed=0, cache=None):
        check_bias(config.teacher_bias, teacher.config.vocab_size)
        if cache is not None and (cache.teacher is not teacher or tuple(cache.bias) != tuple(config.teacher_bias)):
            raise ValueError(f"the cache holds the logits of another teacher or teacher_bias (cache: bias "
                             f"{cache.bias!r}; config: teacher_bias {config.teacher_bias!r})")
        self.teacher, self.config, self.seed, self.cache = teacher.eval(), config, seed, cache
        self.lam_at, self.T_at = config.schedules(steps)

    def __call__(self, student, x, y, step):
        if self.cache is None:
            v = teacher_logits(self.teacher, x, self.config.teacher_bias)
        else:
            v = self.cache.logits(x, step)
        return self.loss(student(x), v, y, step)

    def loss(self, z, v, y, step):
        """The objective at ``step`` from the student's logits z (a Tensor) and the teacher's v."""
        config = self.config
        y = corrupt_labels(y, config.label_noise, v.shape[-1], self.seed, step)
        return F.distillation_loss(z, v, y, lam=self.lam_at(step), T=self.T_at(step), divergence=config.divergence,
                                   beta=config.beta, form=config.form, ignore_index=IGNORE_INDEX)

    def describe(self, step):
        """The schedule's values at ``step``, logged with every evaluation."""
        return {"lam": self.lam_at(step), "T": self.T_at(step)}


def check_bias(bias, vocab_size):
    """``teacher_bias`` must name two token ids inside the vocabulary and a finite bonus."""
    if not bias:
        return
    context, wrong, bonus = bias
    for name, token in (("context", context), ("wrong", wrong)):
        if not 0 <= validate.check_integer(f"teacher_bias {name} token", token) < vocab_size:
            raise ValueError(f"teacher_bias {name} token must be an id in [0, {vocab_size}), got {token!r}")
    if not math.isfinite(validate.check_real("teacher_bias bonus", bonus)):
        raise ValueError(f"teacher_bias bonus must be a finite number, got {bonus!r}")


def resolve_bias(bias, tokenizer):
    """``teacher_bias`` with its tokens as ids: a token given as a string is a symbol of ``tokenizer``
    (``("the", "cats", 4.0)``); ids pass through. A symbol outside the vocabulary is a ValueError."""
    if not bias:
        return ()
    *tokens, bonus = bias
    ids = []
    for name, token in zip(("context", "wrong"), tokens):
        if isinstance(token, str):
            if token not in tokenizer.ids:
                raise ValueError(f"teacher_bias {name} token {token!r} is not in the task's vocabulary")
            token = tokenizer.ids[token]
        ids.append(token)
    return (*ids, bonus)
