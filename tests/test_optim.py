"""Optimizers against their update formulas (and PyTorch when installed), clipping, schedules."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import arr, tensor
from strategies import normal, seeds

from minikd import backend, optim
from minikd.nn import schedules


def params_with_grads(seed):
    """A matrix and a bias, each with a fixed gradient."""
    w, b = tensor(normal((3, 4), seed), grad=True), tensor(normal(4, seed + 1), grad=True)
    w.grad, b.grad = arr(normal((3, 4), seed + 2)), arr(normal(4, seed + 3))
    return w, b


def on_the_device(array):
    """The array lives where the backend makes arrays (None: NumPy's one device)."""
    return backend.device() is None or array.device == backend.device()


def test_sgd_momentum_follows_its_formula():
    w, b = params_with_grads(0)
    w0, g = backend.to_numpy(w.data).copy(), backend.to_numpy(w.grad).copy()
    opt = optim.SGD([w, b], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()  # same gradient twice: v1 = g, v2 = 0.9·g + g
    np.testing.assert_allclose(backend.to_numpy(w.data), w0 - 0.1 * g - 0.1 * 1.9 * g, rtol=1e-12)


@given(seed=seeds, steps=st.integers(1, 4), wd=st.sampled_from([0.0, 0.1]))
def test_adamw_follows_its_formula(seed, steps, wd):
    w, b = params_with_grads(seed)
    lr, b1, b2, eps = 0.01, 0.9, 0.95, 1e-8
    expected = {id(p): backend.to_numpy(p.data).copy() for p in (w, b)}
    moments = {id(p): [0.0, 0.0] for p in (w, b)}
    opt = optim.AdamW([w, b], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for t in range(1, steps + 1):
        opt.step()
        for p in (w, b):
            g = backend.to_numpy(p.grad)
            m, v = moments[id(p)]
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            moments[id(p)] = [m, v]
            decay = wd if p.ndim >= 2 else 0.0  # biases are not decayed
            theta = expected[id(p)] * (1 - lr * decay)
            expected[id(p)] = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    for p in (w, b):
        np.testing.assert_allclose(backend.to_numpy(p.data), expected[id(p)], rtol=1e-10, atol=1e-14)


def test_adamw_matches_pytorch():
    torch = pytest.importorskip("torch")
    w, b = params_with_grads(1)
    tw, tb = (torch.tensor(backend.to_numpy(p.data), requires_grad=True) for p in (w, b))
    tw.grad, tb.grad = (torch.tensor(backend.to_numpy(p.grad)) for p in (w, b))
    ours = optim.AdamW([w, b], lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)
    theirs = torch.optim.AdamW([{"params": [tw], "weight_decay": 0.1}, {"params": [tb], "weight_decay": 0.0}],
                               lr=0.01, betas=(0.9, 0.95))
    for _ in range(3):
        ours.step()
        theirs.step()
    np.testing.assert_allclose(backend.to_numpy(w.data), tw.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(b.data), tb.detach().numpy(), rtol=1e-10)


def test_optimizer_state_round_trip():
    w, b = params_with_grads(2)
    opt = optim.AdamW([w, b], lr=0.01)
    opt.step()
    other = optim.AdamW([w, b], lr=0.01)
    other.load_state_dict(opt.state_dict())
    assert other.steps == 1
    for a, c in zip(opt.m + opt.v, other.m + other.v):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(c))


@given(seed=seeds, max_norm=st.floats(0.01, 100.0))
def test_clip_grad_norm(seed, max_norm):
    w, b = params_with_grads(seed)
    before = np.sqrt(sum((backend.to_numpy(p.grad) ** 2).sum() for p in (w, b)))
    norm = optim.clip_grad_norm([w, b], max_norm)
    after = np.sqrt(sum((backend.to_numpy(p.grad) ** 2).sum() for p in (w, b)))
    assert float(norm) == pytest.approx(before, rel=1e-12)
    assert after == pytest.approx(min(before, max_norm), rel=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-1.0), "lr"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=1.0), "momentum"),
    (lambda p: optim.AdamW(p, lr=0.1, betas=(0.9,)), "betas"),
    (lambda p: optim.AdamW(p, lr=0.1, betas=(0.9, 1.5)), "betas\\[1\\]"),
    (lambda p: optim.AdamW(p, lr=0.1, eps=0.0), "eps"),
    (lambda p: optim.AdamW([], lr=0.1), "empty"),
    (lambda p: optim.clip_grad_norm(p, 0.0), "max_norm"),
])
def test_optimizer_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make(list(params_with_grads(0)))


@pytest.mark.parametrize("make, name, interval, value", [
    (lambda p: optim.SGD(p, lr=-1.0), "lr", "[0.0, inf)", -1.0),
    (lambda p: optim.SGD(p, lr=0.1, momentum=1.0), "momentum", "[0.0, 1.0)", 1.0),
    (lambda p: optim.AdamW(p, lr=0.1, betas=(1.0, 0.9)), "betas[0]", "[0.0, 1.0)", 1.0),
    (lambda p: optim.AdamW(p, lr=0.1, betas=(1.5, 0.9)), "betas[0]", "[0.0, 1.0)", 1.5),
    (lambda p: optim.AdamW(p, lr=0.1, betas=(0.9, 1.0)), "betas[1]", "[0.0, 1.0)", 1.0),
    (lambda p: optim.AdamW(p, lr=0.1, eps=0.0), "eps", "(0.0, inf)", 0.0),
    (lambda p: optim.AdamW(p, lr=0.1, weight_decay=-0.1), "weight_decay", "[0.0, inf)", -0.1),
    (lambda p: optim.clip_grad_norm(p, 0.0), "max_norm", "(0.0, inf)", 0.0),
])
def test_a_bad_number_is_named_with_its_allowed_interval(make, name, interval, value):
    """The message names the argument, the interval it must lie in ('(' open, '[' closed) and the value."""
    with pytest.raises(ValueError) as caught:
        make(list(params_with_grads(0)))
    assert str(caught.value) == f"{name} must be a number in {interval}, got {value!r}"


def test_other_bad_arguments_are_named():
    w, b = params_with_grads(0)
    with pytest.raises(TypeError, match=r"^lr must be a number, got str"):
        optim.SGD([w, b], lr="0.1")
    with pytest.raises(ValueError, match=r"^params is empty: "):
        optim.AdamW([], lr=0.1)
    with pytest.raises(ValueError, match=r"^every parameter given to an optimizer must have requires_grad=True$"):
        optim.SGD([w, tensor(normal(3, 0))], lr=0.1)
    state = optim.AdamW([w, b], lr=0.1).state_dict()
    state["m.0"] = arr(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^optimizer state m\.0 has shape \(2, 2\), expected \(3, 4\)$"):
        optim.AdamW([w, b], lr=0.1).load_state_dict(state)


def test_defaults_sgd_without_momentum_and_adamw_decay_of_one_hundredth():
    """SGD's default μ = 0 is plain gradient descent; AdamW's defaults (β = (0.9, 0.999), ε = 1e-8,
    weight decay 0.01): at t = 1, m̂ = g and √v̂ = |g|, so θ' = θ·(1 − lr·0.01) − lr·g/(|g| + ε) on a matrix."""
    w, b = params_with_grads(3)
    w0, g = backend.to_numpy(w.data).copy(), backend.to_numpy(w.grad).copy()
    sgd = optim.SGD([w, b], lr=0.1)
    sgd.step()
    sgd.step()  # same gradient twice, no velocity carried over
    np.testing.assert_allclose(backend.to_numpy(w.data), w0 - 2 * 0.1 * g, rtol=1e-12)
    w, b = params_with_grads(3)
    optim.AdamW([w, b], lr=0.1).step()
    np.testing.assert_allclose(backend.to_numpy(w.data), w0 * (1 - 0.1 * 0.01) - 0.1 * g / (np.abs(g) + 1e-8),
                               rtol=1e-10)


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.AdamW(p, lr=0.1)])
def test_state_dict_is_a_snapshot_on_the_device(make):
    """Later steps do not change a state taken before them (a checkpoint keeps what it saved), and every
    array lives on the backend's device; loading it into a fresh optimizer resumes the same run."""
    w, b = params_with_grads(4)
    opt = make([w, b])
    opt.step()
    state = opt.state_dict()
    saved = {key: backend.to_numpy(value).copy() for key, value in state.items()}
    assert all(on_the_device(value) for value in state.values())
    opt.step()
    for key, value in state.items():
        np.testing.assert_array_equal(backend.to_numpy(value), saved[key], err_msg=key)
    w2, b2 = params_with_grads(4)
    w2.data, b2.data = arr(backend.to_numpy(w.data)), arr(backend.to_numpy(b.data))
    resumed, uninterrupted = make([w2, b2]), opt
    resumed.load_state_dict(opt.state_dict())
    resumed.step()
    uninterrupted.step()
    np.testing.assert_array_equal(backend.to_numpy(w2.data), backend.to_numpy(w.data))


def test_clip_grad_norm_of_tiny_gradients_one_parameter_and_none():
    """min(1, c/(‖g‖ + 10⁻⁶)) exactly, also where the 10⁻⁶ matters; one parameter; no gradient at all: norm 0."""
    w, _ = params_with_grads(5)
    w.grad = arr(backend.to_numpy(w.grad) * 1e-4 / np.linalg.norm(backend.to_numpy(w.grad)))  # ‖g‖ = 10⁻⁴
    before = backend.to_numpy(w.grad).copy()
    norm = optim.clip_grad_norm([w], 1e-5)
    assert float(norm) == pytest.approx(1e-4, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(w.grad), before * 1e-5 / (1e-4 + 1e-6), rtol=1e-12)
    untouched = tensor(normal(3, 0), grad=True)
    zero = optim.clip_grad_norm([untouched], 1.0)
    assert zero.shape == () and float(zero) == 0.0 and untouched.grad is None
    assert on_the_device(zero)


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine", "step"])
@given(start=st.floats(0.0, 1.0), end=st.floats(0.0, 1.0), total=st.integers(1, 1000))
def test_schedules_hit_their_end_points(kind, start, end, total):
    s = schedules.make(kind, start, end, total)
    assert s(0) == pytest.approx(start)
    assert s(total) == pytest.approx(start if kind == "constant" else end)
    assert s(10 * total) == s(total)  # and stay there
    values = [s(t) for t in range(0, total + 1, max(1, total // 50))]
    assert min(values) >= min(start, end) - 1e-12 and max(values) <= max(start, end) + 1e-12


def test_warmup_cosine():
    s = schedules.WarmupCosine(peak=1.0, warmup=10, total=110, end=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(110) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup"):
        schedules.WarmupCosine(peak=1.0, warmup=200, total=110)
    with pytest.raises(ValueError, match="schedule"):
        schedules.make("exponential", 1.0, 0.0, 10)
