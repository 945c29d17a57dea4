"""Bad input gets a clear error naming the argument and its value; never a silent NaN."""

import numpy as np
import pytest
from reference import arr

from minikd import Tensor
from minikd import functional as F

Z = np.random.default_rng(0).standard_normal((2, 3, 5))
V = np.random.default_rng(1).standard_normal((2, 3, 5))
Y = np.array([[0, 1, 2], [3, 4, -100]])


def kd(z=Z, v=V, y=Y, **kwargs):
    return F.distillation_loss(Tensor(arr(z)), arr(v), arr(y), **kwargs)


@pytest.mark.parametrize("T", [0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_finite_and_positive(T):
    for call in (lambda: kd(T=T), lambda: F.softmax(Tensor(arr(Z)), T=T), lambda: F.kl_div(Tensor(arr(Z)), arr(V), T=T),
                 lambda: F.log_softmax(Tensor(arr(Z)), T=T), lambda: F.jsd(Tensor(arr(Z)), arr(V), T=T)):
        with pytest.raises(ValueError, match=f"T must be a finite number > 0, got T={T!r}"):
            call()


def test_temperature_must_be_a_number():
    with pytest.raises(TypeError, match="T must be a number, got str '2'"):
        kd(T="2")


@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan")])
def test_lam_range_for_the_interpolated_form(lam):
    with pytest.raises(ValueError, match=f"lam.*got lam={lam!r}"):
        kd(lam=lam)


def test_lam_range_for_the_additive_form():
    kd(lam=3.0, form="additive")  # any lam >= 0 is fine there
    with pytest.raises(ValueError, match="lam must be >= 0 for form='additive', got lam=-0.5"):
        kd(lam=-0.5, form="additive")


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.2, 2])
def test_beta_inside_the_open_interval(beta):
    with pytest.raises(ValueError, match=f"beta must be a number in \\(0, 1\\), got beta={beta!r}"):
        kd(divergence="jsd", beta=beta)
    with pytest.raises(ValueError, match="beta"):
        F.jsd(Tensor(arr(Z)), arr(V), beta=beta)


def test_vocabulary_size_mismatch_is_named():
    with pytest.raises(ValueError, match="vocabulary size differs: student_logits has 5 classes, teacher_logits has 4"):
        kd(v=V[..., :4])
    with pytest.raises(ValueError, match="student_logits shape \\(2, 3, 5\\) differs from teacher_logits shape \\(3, 5\\)"):
        kd(v=V[0])


def test_targets_out_of_range_or_not_integers():
    with pytest.raises(ValueError, match="targets must be in \\[0, 5\\) or equal ignore_index=-100, got 5 at flat position 1"):
        kd(y=np.array([[0, 5, 2], [3, 4, 1]]))
    with pytest.raises(ValueError, match="got -1 at flat position 0"):
        F.cross_entropy(Tensor(arr(Z)), arr(np.array([[-1, 0, 0], [0, 0, 0]])))
    with pytest.raises(TypeError, match="targets must be integers, got dtype float64"):
        kd(y=Y.astype(float))
    with pytest.raises(ValueError, match="targets must have the logits' leading shape \\(2, 3\\), got \\(3,\\)"):
        kd(y=Y[0])


def test_a_custom_ignore_index_is_honoured():
    kd(y=np.array([[0, 1, 2], [3, 4, 7]]), ignore_index=7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["student_logits", "teacher_logits"])
def test_nan_or_inf_in_logits_is_named(bad, where):
    z, v = Z.copy(), V.copy()
    (z if where == "student_logits" else v)[1, 2, 3] = bad
    pattern = f"{where} must be finite, got {bad} at index \\(1, 2, 3\\)"
    for lam in (0.0, 0.5, 1.0):
        with pytest.raises(ValueError, match=pattern):
            kd(z=z, v=v, lam=lam)
    with pytest.raises(ValueError, match=pattern):
        F.kl_div(Tensor(arr(z)), arr(v), direction="reverse")
    with pytest.raises(ValueError, match=pattern):
        F.jsd(Tensor(arr(z)), arr(v))


def test_nan_in_softmax_and_nll_inputs():
    z = Z.copy()
    z[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x must be finite, got nan at index \\(0, 0, 0\\)"):
        F.softmax(Tensor(arr(z)))
    with pytest.raises(ValueError, match="log_probs must be finite"):
        F.nll_loss(Tensor(arr(z)), arr(Y))
    with pytest.raises(ValueError, match="student_logits must be finite"):
        F.cross_entropy(Tensor(arr(z)), arr(Y))


def test_unknown_divergence_form_or_direction():
    with pytest.raises(ValueError, match="divergence must be one of 'forward_kl', 'reverse_kl', 'jsd'; got divergence='kl'"):
        kd(divergence="kl")
    with pytest.raises(ValueError, match="form must be one of 'interpolate', 'additive'; got form='sum'"):
        kd(form="sum")
    with pytest.raises(ValueError, match="direction must be one of 'forward', 'reverse'; got direction='both'"):
        F.kl_div(Tensor(arr(Z)), arr(V), direction="both")


def test_every_position_ignored_is_an_error():
    with pytest.raises(ValueError, match="every position is ignored"):
        kd(y=np.full((2, 3), -100))
    with pytest.raises(ValueError, match="mask selects no position"):
        F.kl_div(Tensor(arr(Z)), arr(V), mask=arr(np.zeros((2, 3), dtype=bool)))


def test_integer_logits_and_bad_masks():
    with pytest.raises(TypeError, match="student_logits must be a float array, got dtype int64"):
        kd(z=np.zeros((2, 3, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="mask must have the logits' leading shape \\(2, 3\\), got \\(3,\\)"):
        F.kl_div(Tensor(arr(Z)), arr(V), mask=arr(np.ones(3, dtype=bool)))
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        F.kl_div(Tensor(arr(Z)), arr(V), mask=arr(np.full((2, 3), 2)))


def test_names_in_the_float_checks_and_the_empty_mask():
    ints = arr(np.zeros((2, 5), dtype=np.int64))
    for fn in (F.softmax, F.log_softmax):
        with pytest.raises(TypeError, match=r"^x must be a float array, got dtype int64"):
            fn(ints)
    with pytest.raises(TypeError, match=r"^teacher_logits must be a float array, got dtype int64"):
        F.kl_div(Tensor(arr(np.zeros((2, 5)))), ints)
    with pytest.raises(ValueError, match=r"^mask selects no position; the mean is undefined$"):
        F.jsd(Tensor(arr(Z)), arr(V), mask=arr(np.zeros((2, 3), dtype=bool)))


def test_a_loss_that_overflows_on_finite_logits_names_its_cause():
    """Finite float32 logits whose loss is inf: either z/T leaves float32 (choose a larger T), or the
    divergence's weight λ·T² is too big (choose a smaller λ)."""
    wide = np.array([[3e38, -3e38]], dtype=np.float32)  # z − max z = −6e38 overflows in the softmax
    with pytest.raises(ValueError, match=r"^the loss overflowed to inf although the logits are finite: divided by "
                                         r"T=1\.0 they reach 3e\+38, beyond float32; choose a larger T$"):
        F.cross_entropy(Tensor(arr(wide)), arr(np.array([1])))
    big = np.array([[1e37, -1e37]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"divided by T=0\.01 they reach 1e\+39, beyond float32; choose a larger T$"):
        F.kl_div(Tensor(arr(big)), arr(big[:, ::-1].copy()), T=0.01)
    z, v = (arr(np.array([[10.0, -10.0]], dtype=np.float32) * sign) for sign in (1, -1))
    with pytest.raises(ValueError, match=r"^the loss overflowed to inf although the logits are finite: the "
                                         r"distillation weight λ·T² reaches 1e\+38; choose a smaller λ$"):
        F.distillation_loss(Tensor(z), v, arr(np.array([0])), lam=1e38, T=1.0, form="additive")
