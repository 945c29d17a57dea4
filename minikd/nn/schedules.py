"""Schedules: a value as a function of the training step, for learning rates, λ and temperature.

Each schedule is a small callable object ``schedule(step) -> float`` over steps 0..total; it
reaches ``start`` at step 0 and ``end`` at step ``total`` (and stays there after).
"""

import math
from dataclasses import dataclass

from minikd.engine import validate


def _check_total(total):
    return validate.check_positive_int("total (the number of steps)", total)


def _progress(step, total):
    """step / total, clipped to [0, 1]."""
    return min(max(step, 0), total) / total


@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, step):
        return float(self.value)


@dataclass(frozen=True)
class _Ramp:
    """A move from ``start`` at step 0 to ``end`` at step ``total``; subclasses give its shape."""

    start: float
    end: float
    total: int

    def __post_init__(self):
        _check_total(self.total)


class Linear(_Ramp):
    """start + (end − start)·t/total."""

    def __call__(self, step):
        return self.start + (self.end - self.start) * _progress(step, self.total)


class Cosine(_Ramp):
    """end + (start − end)·½(1 + cos(π·t/total)): flat at both ends, fastest in the middle."""

    def __call__(self, step):
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * _progress(step, self.total)))


@dataclass(frozen=True)
class Step(_Ramp):
    """A staircase of ``stairs`` equal drops: start + (end − start)·⌊stairs·t/total⌋/stairs."""

    stairs: int = 4

    def __post_init__(self):
        super().__post_init__()
        _check_total(self.stairs)

    def __call__(self, step):
        return self.start + (self.end - self.start) * math.floor(self.stairs * _progress(step, self.total)) / self.stairs


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from 0 to ``peak`` over ``warmup`` steps, then cosine decay to ``end`` at ``total``."""

    peak: float
    warmup: int
    total: int
    end: float = 0.0

    def __post_init__(self):
        _check_total(self.total)
        if not 0 <= validate.check_integer("warmup", self.warmup) < self.total:
            raise ValueError(f"warmup must be an integer in [0, total={self.total}), got {self.warmup!r}")

    def __call__(self, step):
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        return Cosine(self.peak, self.end, self.total - self.warmup)(step - self.warmup)


KINDS = ("constant", "linear", "cosine", "step")  # the schedules ``make`` builds by name


def make(kind, start, end, total):
    """A schedule by name: ``constant`` (start throughout), ``linear``, ``cosine`` or ``step``."""
    if kind == "constant":
        return Constant(start)
    if kind == "linear":
        return Linear(start, end, total)
    if kind == "cosine":
        return Cosine(start, end, total)
    if kind == "step":
        return Step(start, end, total)
    raise ValueError(f"schedule must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
