"""TransformerLM: shapes, errors, causality, a whole-model gradient check, overfitting, generation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import arr
from strategies import seeds

from minikd import backend, directional_gradcheck, optim
from minikd import functional as F
from minikd.nn.model import ModelConfig, TransformerLM, preset


def tiny(dtype="float64", **overrides):
    return ModelConfig(**{**dict(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8, dtype=dtype), **overrides})


def ids(shape, seed, V=7):
    return arr(np.random.default_rng(seed).integers(0, V, shape))


def test_shapes_and_hidden_states():
    model = TransformerLM(tiny(), seed=0)
    logits, hiddens = model(ids((3, 5), 0), return_hidden=True)
    assert logits.shape == (3, 5, 7)
    assert len(hiddens) == model.config.n_layer + 1
    assert all(h.shape == (3, 5, 8) for h in hiddens)
    assert model(ids((3, 5), 0)).shape == (3, 5, 7)


def test_tied_weights_count_once():
    tied, untied = TransformerLM(tiny(), seed=0), TransformerLM(tiny(tie_weights=False), seed=0)
    assert untied.num_params() - tied.num_params() == 7 * 8
    assert "lm_head.weight" in dict(untied.named_parameters())


@given(seed=seeds, tie=st.booleans())
@settings(max_examples=10)
def test_whole_model_directional_gradcheck(seed, tie):
    """d/dθ of distillation_loss(model(idx), teacher, y) for all parameters at once, in float64."""
    model = TransformerLM(tiny(tie_weights=tie), seed=seed % 1000)
    rng = np.random.default_rng(seed)
    idx, y = ids((2, 5), seed), arr(rng.integers(0, 7, (2, 5)))
    teacher = arr(rng.standard_normal((2, 5, 7)))
    directional_gradcheck(lambda: F.distillation_loss(model(idx), teacher, y, lam=0.4, T=2.0),
                          model.parameters(), seed=seed)


@given(seed=seeds, t=st.integers(0, 4))
@settings(max_examples=20)
def test_causality(seed, t):
    """Logits at positions ≤ t do not change when any token after t changes."""
    model = TransformerLM(tiny(), seed=seed % 1000)
    idx = backend.to_numpy(ids((2, 6), seed)).copy()
    changed = idx.copy()
    changed[:, t + 1:] = (changed[:, t + 1:] + 1 + np.random.default_rng(seed).integers(0, 5)) % 7
    a = backend.to_numpy(model(arr(idx)).data)
    b = backend.to_numpy(model(arr(changed)).data)
    np.testing.assert_array_equal(a[:, : t + 1], b[:, : t + 1])
    if t < 5:
        assert not np.array_equal(a[:, t + 1:], b[:, t + 1:])


def test_same_seed_same_model_and_different_seed_different_model():
    a, b, c = (TransformerLM(tiny(), seed=s).state_dict() for s in (3, 3, 4))
    assert all(np.array_equal(backend.to_numpy(a[k]), backend.to_numpy(b[k])) for k in a)
    assert not np.array_equal(backend.to_numpy(a["wte.weight"]), backend.to_numpy(c["wte.weight"]))


def test_state_dict_round_trip_is_exact():
    source, target = TransformerLM(tiny(dropout=0.1), seed=1), TransformerLM(tiny(dropout=0.1), seed=2)
    source.train()
    source(ids((2, 4), 0))  # advances the dropout counters, which are state too
    target.load_state_dict(source.state_dict())
    for (name, p), (_, q) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(backend.to_numpy(p.data), backend.to_numpy(q.data), err_msg=name)
    assert target.blocks[0].attn.dropout.calls == 1
    source.eval(), target.eval()  # dropout masks also depend on the model's seed, which differs here
    x = ids((2, 4), 1)
    np.testing.assert_array_equal(backend.to_numpy(source(x).data), backend.to_numpy(target(x).data))


def test_load_state_dict_errors():
    model = TransformerLM(tiny(), seed=0)
    state = model.state_dict()
    with pytest.raises(ValueError, match="missing"):
        model.load_state_dict({k: v for k, v in state.items() if k != "wte.weight"})
    with pytest.raises(ValueError, match="wte.weight"):
        model.load_state_dict({**state, "wte.weight": state["wte.weight"][:3, ...]})


def test_tiny_model_overfits_a_tiny_batch():
    """Four fixed sequences memorised: cross-entropy from log 7 ≈ 1.95 to below 0.05 in 150 AdamW steps."""
    model = TransformerLM(tiny(dtype="float32"), seed=0)
    x, y = ids((4, 6), 1), ids((4, 6), 2)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert first > 1.8
    assert loss.item() < 0.05


def test_dropout_is_off_in_eval_and_seeded_in_train():
    model = TransformerLM(tiny(dropout=0.5), seed=0)
    x = ids((2, 6), 0)
    model.eval()
    np.testing.assert_array_equal(backend.to_numpy(model(x).data), backend.to_numpy(model(x).data))
    model.train()
    assert not np.array_equal(backend.to_numpy(model(x).data), backend.to_numpy(model(x).data))
    again = TransformerLM(tiny(dropout=0.5), seed=0).train()
    first = TransformerLM(tiny(dropout=0.5), seed=0).train()
    np.testing.assert_array_equal(backend.to_numpy(first(x).data), backend.to_numpy(again(x).data))


def test_generate_greedy_and_seeded_sampling():
    model = TransformerLM(tiny(), seed=0)
    prompt = ids((3, 2), 0)
    greedy = backend.to_numpy(model.generate(prompt, 8, temperature=0))
    assert greedy.shape == (3, 10)
    np.testing.assert_array_equal(greedy[:, :2], backend.to_numpy(prompt))
    for t in range(2, 10):  # each greedy token is the argmax given the (cropped) context before it
        context = greedy[:, max(0, t - 6):t]
        expected = backend.to_numpy(model(arr(context)).data)[:, -1].argmax(axis=-1)
        np.testing.assert_array_equal(greedy[:, t], expected)
    a = backend.to_numpy(model.generate(prompt, 8, temperature=1.0, top_k=3, seed=1))
    b = backend.to_numpy(model.generate(prompt, 8, temperature=1.0, top_k=3, seed=1))
    np.testing.assert_array_equal(a, b)
    assert model.training  # generate restores the mode it found


def test_top_k_one_is_greedy():
    model = TransformerLM(tiny(), seed=0)
    prompt = ids((3, 2), 0)
    np.testing.assert_array_equal(backend.to_numpy(model.generate(prompt, 5, temperature=2.0, top_k=1, seed=9)),
                                  backend.to_numpy(model.generate(prompt, 5, temperature=0)))


@pytest.mark.parametrize("overrides, message", [
    (dict(n_embd=10, n_head=3), "n_embd must be divisible by n_head"),
    (dict(n_layer=0), "n_layer must be a positive integer"),
    (dict(dropout=1.0), "dropout must be in"),
    (dict(dtype="float16"), "dtype"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


@pytest.mark.parametrize("overrides, message", [
    (dict(vocab_size=2.5), "vocab_size must be an integer, got float 2.5"),
    (dict(n_head="2"), "n_head must be an integer, got str '2'"),
])
def test_config_of_the_wrong_kind_is_a_type_error(overrides, message):
    with pytest.raises(TypeError, match=message):
        tiny(**overrides)


@pytest.mark.parametrize("idx, message", [
    (np.array([[0, 7]]), "token id 7, outside the vocabulary"),
    (np.array([[0, -1]]), "token id -1"),
    (np.zeros((1, 7), dtype=np.int64), "sequence length 7 exceeds block_size=6"),
    (np.zeros(3, dtype=np.int64), "shape \\(batch, sequence\\)"),
])
def test_idx_errors(idx, message):
    with pytest.raises(ValueError, match=message):
        TransformerLM(tiny(), seed=0)(arr(idx))


def test_float_token_ids_are_a_type_error():
    with pytest.raises(TypeError, match="integer token ids"):
        TransformerLM(tiny(), seed=0)(arr(np.zeros((1, 3))))


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(max_new_tokens=2, temperature=-1.0), "temperature"),
    (dict(max_new_tokens=2, top_k=0), "top_k"),
])
def test_generate_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerLM(tiny(), seed=0).generate(ids((1, 2), 0), **kwargs)


def test_presets():
    assert TransformerLM(preset("teacher", 60, 32)).num_params() > TransformerLM(preset("small", 60, 32)).num_params()
    with pytest.raises(ValueError, match="preset"):
        preset("huge", 60, 32)
