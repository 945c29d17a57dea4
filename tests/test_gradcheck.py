"""gradcheck itself: it passes correct gradients and catches wrong ones."""

import numpy as np
import pytest

from minikd import GradcheckError, Tensor, backend, gradcheck
from minikd import functional as F
from minikd.engine.autograd import Function


class WrongSoftmax(Function):
    """A softmax whose backward forgets the −y·Σ(g·y) term: a classic mistake."""

    def forward(self, x):
        xp = backend.xp()
        e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
        self.y = e / xp.sum(e, axis=-1, keepdims=True)
        return self.y

    def backward(self, g):
        return (g * self.y,)


def logits(seed=0, shape=(3, 5)):
    return Tensor(backend.from_numpy(np.random.default_rng(seed).standard_normal(shape)), requires_grad=True)


def test_a_wrong_backward_is_caught():
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda x: WrongSoftmax.apply(x), logits())
    report = caught.value.report
    assert report.max_abs_error > 1e-3
    assert "worst: input 0" in str(caught.value)


class ForgetfulSoftmax(WrongSoftmax):
    """A softmax whose backward returns zero: wrong, yet right for the constant Σ softmax = 1."""

    def backward(self, g):
        return (0 * g,)


def test_a_plain_sum_proves_nothing_a_random_cotangent_does():
    def softmax(x):
        return ForgetfulSoftmax.apply(x)

    gradcheck(lambda x: softmax(x).sum(), logits())  # passes: the vacuous check
    with pytest.raises(GradcheckError):
        gradcheck(softmax, logits())  # Σ softmax(x)·w with random w exposes it


def test_report_of_a_passing_check():
    report = gradcheck(lambda x: F.log_softmax(x, T=2.0), logits())
    assert report.checked == 15
    assert report.max_abs_error < 1e-6 and report.worst_input == 0 and len(report.worst_index) == 2


def test_float32_inputs_are_checked_in_float64():
    x = Tensor(backend.from_numpy(np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)),
               requires_grad=True)
    gradcheck(lambda x: F.softmax(x, T=0.5), x)  # would fail in float32 with eps=1e-6


def test_errors():
    with pytest.raises(ValueError, match="requires_grad=True"):
        gradcheck(lambda x: x * 2, Tensor(backend.from_numpy(np.ones(2))))
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda x: 1.0, logits())


def test_only_inputs_that_require_grad_are_perturbed():
    x, c = logits(0), Tensor(backend.from_numpy(np.ones((3, 5))))
    report = gradcheck(lambda x, c: x * c, x, c)
    assert report.checked == 15
