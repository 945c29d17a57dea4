"""The transformer's layers: every hand-written backward gradient-checked over Hypothesis-drawn
shapes, and the properties each layer promises (attention rows are causal distributions, LayerNorm
standardises, dropout keeps the mean, embedding gradients add up over repeated ids)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from reference import arr, tensor
from strategies import normal, seeds

from minikd import backend, gradcheck
from minikd.nn import layers

sides = st.integers(1, 4)


@given(lead=st.lists(sides, min_size=1, max_size=3), c_in=sides, c_out=sides, bias=st.booleans(), seed=seeds)
def test_linear_gradcheck(lead, c_in, c_out, bias, seed):
    x = tensor(normal(tuple(lead) + (c_in,), seed), grad=True)
    w = tensor(normal((c_out, c_in), seed + 1), grad=True)
    if bias:
        gradcheck(layers.linear, x, w, tensor(normal(c_out, seed + 2), grad=True))
    else:
        gradcheck(layers.linear, x, w)


@given(B=sides, S=sides, V=st.integers(1, 6), C=sides, seed=seeds)
def test_embedding_gradcheck(B, S, V, C, seed):
    idx = arr(np.random.default_rng(seed).integers(0, V, (B, S)))
    gradcheck(lambda w: layers.embedding(idx, w), tensor(normal((V, C), seed), grad=True))


def test_embedding_gradient_adds_over_repeated_ids():
    """A scatter-add: an id used three times gets three contributions (``a[idx] += v`` would keep one)."""
    w = tensor(np.zeros((4, 2)), grad=True)
    out = layers.embedding(arr([[1, 1, 1, 3]]), w)
    out.backward(arr(np.ones((1, 4, 2))))
    np.testing.assert_array_equal(backend.to_numpy(w.grad), [[0, 0], [3, 3], [0, 0], [1, 1]])


@given(lead=st.lists(sides, min_size=1, max_size=2), C=st.integers(2, 6), seed=seeds)
def test_layer_norm_gradcheck(lead, C, seed):
    x = tensor(normal(tuple(lead) + (C,), seed, scale=2.0), grad=True)
    gamma = tensor(normal(C, seed + 1), grad=True)
    beta = tensor(normal(C, seed + 2), grad=True)
    gradcheck(layers.layer_norm, x, gamma, beta)


@given(lead=st.lists(sides, min_size=1, max_size=2), C=st.integers(2, 8), seed=seeds)
def test_layer_norm_standardises_each_row_before_its_affine(lead, C, seed):
    shape = tuple(lead) + (C,)
    x = arr(normal(shape, seed, scale=5.0) + 3.0)
    y = backend.to_numpy(layers.layer_norm(x, arr(np.ones(C)), arr(np.zeros(C)), eps=0.0).data)
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1.0, rtol=1e-10)


@given(shape=st.lists(sides, min_size=1, max_size=3), seed=seeds)
def test_gelu_gradcheck(shape, seed):
    gradcheck(layers.gelu, tensor(normal(tuple(shape), seed, scale=2.0), grad=True))


def test_gelu_matches_its_definition():
    x = np.linspace(-6, 6, 101)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(backend.to_numpy(layers.gelu(arr(x)).data), expected, rtol=1e-12, atol=1e-15)


@given(B=st.integers(1, 2), S=st.integers(1, 4), H=st.integers(1, 3), D=st.integers(1, 3), seed=seeds)
def test_attention_gradcheck(B, S, H, D, seed):
    qkv = tensor(normal((B, S, 3 * H * D), seed), grad=True)
    gradcheck(lambda q: layers.causal_self_attention(q, H), qkv)


@given(lead=st.lists(sides, min_size=0, max_size=2), S=st.integers(1, 6), seed=seeds)
def test_attention_rows_are_causal_distributions(lead, S, seed):
    """Row t sums to one and puts exactly zero weight on keys after t."""
    att = backend.to_numpy(layers.causal_softmax(arr(normal(tuple(lead) + (S, S), seed, scale=10.0))))
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(att[..., np.triu_indices(S, k=1)[0], np.triu_indices(S, k=1)[1]] == 0.0)
    assert np.all(att >= 0.0)


def test_attention_first_position_sees_only_itself():
    """Position 0 attends only to itself, so its output is its own value vector."""
    H, D = 2, 3
    qkv = normal((1, 4, 3 * H * D), 0)
    y = backend.to_numpy(layers.causal_self_attention(arr(qkv), H).data)
    np.testing.assert_allclose(y[0, 0], qkv[0, 0, 2 * H * D:], rtol=1e-12)


@given(shape=st.lists(sides, min_size=1, max_size=3), p=st.floats(0.05, 0.9), seed=seeds)
def test_dropout_gradcheck(shape, p, seed):
    gradcheck(lambda x: layers.dropout(x, p, seed, (1,)), tensor(normal(tuple(shape), seed), grad=True))


def test_dropout_is_seeded_and_keeps_the_mean():
    x = arr(np.ones((400, 500)))
    a = backend.to_numpy(layers.dropout(x, 0.3, seed=5, keys=(2,)).data)
    b = backend.to_numpy(layers.dropout(x, 0.3, seed=5, keys=(2,)).data)
    c = backend.to_numpy(layers.dropout(x, 0.3, seed=5, keys=(3,)).data)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs((a == 0).mean() - 0.3) < 0.01  # 200k draws: the standard error is 0.001
    assert abs(a.mean() - 1.0) < 0.02
    np.testing.assert_allclose(np.unique(a), [0.0, 1 / 0.7], rtol=1e-6)


def test_linear_layer_norm_and_attention_equal_their_definitions():
    """linear = x Wᵀ + b; layer_norm = (x − μ)/√(σ² + 10⁻⁵)·γ + β with the default ε (rows of variance
    ~10⁻⁵, where ε matters); attention = causal softmax(q kᵀ/√D) v per head."""
    x, w, b = normal((2, 3, 4), 0), normal((5, 4), 1), normal(5, 2)
    np.testing.assert_allclose(backend.to_numpy(layers.linear(arr(x), arr(w), arr(b)).data), x @ w.T + b, rtol=1e-12)
    small = normal((3, 6), 3) * 3e-3
    gamma, beta = normal(6, 4), normal(6, 5)
    centred = small - small.mean(axis=-1, keepdims=True)
    expected = centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-5) * gamma + beta
    for out in (layers.layer_norm(arr(small), arr(gamma), arr(beta)),
                layers.LayerNorm.apply(arr(small), arr(gamma), arr(beta))):
        np.testing.assert_allclose(backend.to_numpy(out.data), expected, rtol=1e-10)
    B, S, H, D = 2, 4, 2, 3
    qkv = normal((B, S, 3 * H * D), 6)
    q, k, v = (qkv[..., i * H * D:(i + 1) * H * D].reshape(B, S, H, D).transpose(0, 2, 1, 3) for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D) + np.triu(np.full((S, S), -np.inf), k=1)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    heads = (weights / weights.sum(axis=-1, keepdims=True)) @ v  # (B, H, S, D)
    np.testing.assert_allclose(backend.to_numpy(layers.causal_self_attention(arr(qkv), H).data),
                               heads.transpose(0, 2, 1, 3).reshape(B, S, H * D), rtol=1e-10)


def test_causal_softmax_is_stable_for_rows_of_very_different_size():
    """Each row is shifted by its own maximum: scores of ±1000 in different rows still give distributions."""
    scores = normal((2, 3, 3), 7) + np.array([1000.0, -1000.0])[:, None, None]
    att = backend.to_numpy(layers.causal_softmax(arr(scores)))
    assert np.isfinite(att).all()
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-12)


def test_dropout_mask_depends_on_the_seed_and_float32_stays_float32():
    x = arr(np.ones((50, 40), dtype=np.float32))
    a, b = (backend.to_numpy(layers.dropout(x, 0.5, seed=seed, keys=(2,)).data) for seed in (5, 6))
    assert not np.array_equal(a, b) and a.dtype == np.float32
    w = tensor(normal((4, 3), 8).astype(np.float32), grad=True)
    layers.embedding(arr(np.array([[0, 2, 2]])), w).sum().backward()
    assert w.grad.dtype == w.dtype
