"""Every Hypothesis strategy of the suite, and the ``ci`` / ``dev`` / ``ci-strict`` / ``mutation`` profiles.

Inputs are float64 and kept away from kinks: logits are drawn on a bounded range, ties in a max
are broken by construction, temperatures span 0.05..50 on a log scale.
"""

import math

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci", derandomize=True, max_examples=50, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(  # the second CI pass, on the strict backend: the array code, fewer draws
    "ci-strict", derandomize=True, max_examples=10, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(  # mutation runs (pyproject.toml, [tool.mutmut]): the suite once per mutant
    "mutation", derandomize=True, max_examples=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

seeds = st.integers(0, 2**31 - 1)
temperatures = st.floats(math.log(0.05), math.log(50.0)).map(math.exp)
lams = st.floats(0.0, 1.0)
betas = st.floats(0.05, 0.95)
divergences = st.sampled_from(["forward_kl", "reverse_kl", "jsd"])
forms = st.sampled_from(["interpolate", "additive"])


@st.composite
def logit_shapes(draw, max_leading_dims=2, max_side=4, max_classes=7):
    """Shapes [..., V] with 0..max_leading_dims leading axes and 2..max_classes classes."""
    leading = draw(st.lists(st.integers(1, max_side), min_size=0, max_size=max_leading_dims))
    return tuple(leading) + (draw(st.integers(2, max_classes)),)


@st.composite
def array_shapes(draw, min_dims=1, max_dims=3, max_side=4):
    return tuple(draw(st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims)))


def normal(shape, seed, scale=1.0):
    """Seeded standard-normal float64 array."""
    return np.random.default_rng(seed).standard_normal(shape) * scale


@st.composite
def logit_pairs(draw, scale=3.0):
    """(student logits, teacher logits, targets with some ignored, seed) of one shape [..., V]."""
    shape = draw(logit_shapes())
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    student = rng.standard_normal(shape) * scale
    teacher = rng.standard_normal(shape) * scale
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    ignored = rng.random(shape[:-1]) < 0.25
    targets = np.where(ignored, -100, targets)
    if np.all(targets == -100):  # keep at least one position
        targets.reshape(-1)[0] = 0
    return student, teacher, targets, seed
