"""The built-in tasks: the grammar's exact distribution, addition's format, text files, batches."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds

from minikd import backend
from minikd.tasks import data, grammar

G = grammar.build()


def test_grammar_is_a_distribution():
    np.testing.assert_allclose(G.joint.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    for name, words in grammar.CLASSES.items():
        assert sum(words.values()) == pytest.approx(1.0), name


@given(seed=seeds, length=st.integers(1, 40))
def test_true_distribution_sums_to_one_for_every_prefix(seed, length):
    tokens = grammar.sample(G, 3, length, seed)
    p = grammar.true_next_token_probs(G, tokens)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    assert (p >= 0).all()
    rows = np.arange(3)[:, None]
    assert (p[rows, np.arange(length - 1)[None, :], tokens[:, 1:]] > 0).all()  # sampled tokens were possible


def test_true_distribution_matches_sampled_frequencies():
    """Over 400k sampled tokens, the counts of each next token after each previous token match the
    sum of the true probabilities at those positions within 5 standard deviations (√expected)."""
    tokens = grammar.sample(G, 200, 2000, seed=11)
    p = grammar.true_next_token_probs(G, tokens)[:, :-1]  # (rows, S − 1, V): predicts tokens[:, 1:]
    previous, nxt = tokens[:, :-1].reshape(-1), tokens[:, 1:].reshape(-1)
    V = len(G.words)
    expected = np.zeros((V, V))
    np.add.at(expected, previous, p.reshape(-1, V))
    observed = np.zeros((V, V))
    np.add.at(observed, (previous, nxt), 1.0)
    z = np.abs(observed - expected) / np.sqrt(expected + 1.0)
    assert z.max() < 5.0, np.unravel_index(z.argmax(), z.shape)
    assert abs(observed.sum() - expected.sum()) < 1e-6 * observed.sum()


def test_ambiguous_words_are_resolved_by_later_context():
    """'the' may start a singular or a plural subject: after '. the' both 'cat' and 'cats' are possible,
    after '. the cat' only singular verbs are."""
    ids = {w: i for i, w in enumerate(G.words)}
    p = grammar.true_next_token_probs(G, np.array([[ids["."], ids["the"], ids["cat"]]]))
    assert p[0, 1, ids["cat"]] > 0 and p[0, 1, ids["cats"]] > 0
    assert p[0, 2, ids["eats"]] > 0 and p[0, 2, ids["eat"]] == 0


def test_impossible_prefix_is_an_error():
    ids = {w: i for i, w in enumerate(G.words)}
    with pytest.raises(ValueError, match="impossible under the grammar at position 2"):
        grammar.true_next_token_probs(G, np.array([[ids["."], ids["the"], ids["eats"]]]))
    with pytest.raises(ValueError, match="must begin with"):
        grammar.true_next_token_probs(G, np.array([[ids["the"]]]))


def test_grammar_task_windows_start_at_sentences_and_shift_by_one():
    task = data.GrammarTask(block_size=16, train_tokens=20_000, val_tokens=5_000, seed=1)
    x, y = (backend.to_numpy(a) for a in task.batch("train", 8, seed=0, step=3))
    assert x.shape == y.shape == (8, 16)
    assert (x[:, 0] == G.words.index(".")).all()
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    x2, _ = task.batch("train", 8, seed=0, step=3)
    np.testing.assert_array_equal(x, backend.to_numpy(x2))  # step t's batch depends only on (seed, t)
    assert not np.array_equal(x, backend.to_numpy(task.batch("train", 8, seed=0, step=4)[0]))
    assert task.tokenizer.decode(task.tokenizer.encode(". the cat runs fast .")) == ". the cat runs fast ."


def test_same_seed_same_corpus():
    a, b = data.GrammarTask(train_tokens=5000, seed=3), data.GrammarTask(train_tokens=5000, seed=3)
    np.testing.assert_array_equal(a.splits["train"], b.splits["train"])
    assert not np.array_equal(a.splits["train"], data.GrammarTask(train_tokens=5000, seed=4).splits["train"])


def test_addition_examples_are_correct_and_only_answers_are_scored():
    task = data.AdditionTask(digits=3, train_examples=500, val_examples=100, seed=0)
    x, y = (backend.to_numpy(a) for a in task.batch("train", 16, seed=0, step=0))
    assert x.shape == (16, task.block_size)
    for row_x, row_y in zip(x, y):
        text = task.tokenizer.decode(np.concatenate([row_x, row_y[-1:]]))
        a, rest = text.split("+")
        b, c = rest.split("=")
        assert len(a) == len(b) == 3 and len(c) == 4 and int(a) + int(b) == int(c), text
        assert (row_y[: task.prompt_length - 1] == data.IGNORE_INDEX).all()
        assert (row_y[task.prompt_length - 1:] >= 0).all()
    train = {tuple(r) for r in task.examples["train"]}
    assert not train & {tuple(r) for r in task.examples["val"]}  # disjoint splits


def test_addition_errors():
    with pytest.raises(ValueError, match="digits"):
        data.AdditionTask(digits=0)
    with pytest.raises(ValueError, match="exceeds"):
        data.AdditionTask(digits=1, train_examples=90, val_examples=20)


def test_text_task(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 20, encoding="utf-8")
    task = data.load_task("text", data=str(path), block_size=8)
    x, _ = task.batch("train", 4, seed=0, step=0)
    assert x.shape == (4, 8)
    assert task.tokenizer.decode(task.tokenizer.encode("lazy fox")) == "lazy fox"


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"\xff\xfe\x00\x01binary", "not UTF-8 text"),
    (b"abc\x00def" * 30, "NUL bytes"),
    (b"short", "too short"),
])
def test_text_task_errors(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        data.load_task("text", data=str(path), block_size=8)


def test_task_name_errors():
    with pytest.raises(ValueError, match="needs a data file"):
        data.load_task("text")
    with pytest.raises(ValueError, match="task must be"):
        data.load_task("poetry")
