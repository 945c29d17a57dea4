"""The built-in tasks: the grammar's exact distribution, addition's format, text files, batches."""

import re

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
    for digits in (0, 7):
        with pytest.raises(ValueError, match=rf"digits must be an integer in 1\.\.6, got {digits}"):
            data.AdditionTask(digits=digits)
    for digits in (True, 3.0, "3"):
        with pytest.raises(TypeError, match="digits must be an integer"):
            data.AdditionTask(digits=digits)
    assert data.AdditionTask(digits=6, train_examples=10, val_examples=5).examples["train"].shape == (10, 6 + 6 + 2 + 7)
    with pytest.raises(ValueError, match=r"train_examples \+ val_examples = 110 exceeds the 100 distinct problems with 1"):
        data.AdditionTask(digits=1, train_examples=90, val_examples=20)


def test_the_documented_default_sizes():
    """The sizes the CLI and the tutorials rely on: grammar 200,000 + 20,000 tokens in streams of 1000,
    windows of 32; addition 3 digits, 20,000 + 1,000 problems; text windows of 64, the last 10 % held out."""
    grammar_task = data.GrammarTask()
    assert grammar_task.block_size == 32
    assert grammar_task.splits["train"].shape == (200, 1000) and grammar_task.splits["val"].shape == (20, 1000)
    np.testing.assert_array_equal(grammar_task.splits["val"], data.GrammarTask(seed=0).splits["val"])
    addition = data.AdditionTask()
    assert (addition.digits, len(addition.examples["train"]), len(addition.examples["val"])) == (3, 20_000, 1_000)
    np.testing.assert_array_equal(addition.examples["val"], data.AdditionTask(seed=0).examples["val"])


def test_default_text_task_windows_and_held_out_tenth(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 100, encoding="utf-8")  # 1000 characters
    task = data.text_task(str(path))
    assert task.block_size == 64 and task.splits["val"].shape == (1, 100) and task.splits["train"].shape == (1, 900)
    assert data.text_task(str(path), val_fraction=0.25).splits["val"].shape == (1, 250)
    with pytest.raises(TypeError, match="^val_fraction must be a number"):
        data.text_task(str(path), val_fraction="0.1")
    for fraction in (0.0, 1.0, 1.1, -0.1):
        with pytest.raises(ValueError, match=rf"val_fraction must be a fraction in \(0, 1\), got {fraction}"):
            data.text_task(str(path), val_fraction=fraction)


def pangram_file(tmp_path):
    """A small text file (440 characters, 28 symbols) for the text task."""
    path = tmp_path / "t.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 10, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", data.TASKS)
def test_load_task_builds_the_task_it_names_with_its_seed_and_sizes(tmp_path, name):
    path = pangram_file(tmp_path)
    sizes = {"grammar": {"block_size": 8, "train_tokens": 1500, "val_tokens": 700},
             "addition": {"digits": 1, "train_examples": 40, "val_examples": 9},
             "text": {"block_size": 5}}[name]
    task = data.load_task(name, seed=5, data=str(path), **sizes)
    assert task.name == name
    if name == "grammar":
        assert task.block_size == 8 and task.splits["train"].shape[0] == 2 and task.splits["val"].shape[0] == 1
        np.testing.assert_array_equal(task.splits["train"], data.GrammarTask(seed=5, **sizes).splits["train"])
        assert not np.array_equal(task.splits["train"], data.load_task(name, seed=6, **sizes).splits["train"])
        np.testing.assert_array_equal(data.load_task(name, **sizes).splits["train"], data.GrammarTask(**sizes).splits["train"])
    elif name == "addition":
        assert task.digits == 1 and len(task.examples["train"]) == 40 and len(task.examples["val"]) == 9
        np.testing.assert_array_equal(task.examples["train"], data.AdditionTask(seed=5, **sizes).examples["train"])
        assert not np.array_equal(task.examples["train"], data.load_task(name, seed=6, **sizes).examples["train"])
        np.testing.assert_array_equal(data.load_task(name, **sizes).examples["train"], data.AdditionTask(**sizes).examples["train"])
    else:
        assert task.block_size == 5


def test_grammar_streams_hold_the_tokens_asked_for_in_rows_of_stream_length():
    """ceil(tokens / stream_length) rows (at least one); a row is never shorter than one window + 1."""
    task = data.GrammarTask(block_size=8, train_tokens=2500, val_tokens=999, stream_length=1000, seed=0)
    assert task.splits["train"].shape == (3, 1000) and task.splits["val"].shape == (1, 1000)
    assert data.GrammarTask(block_size=8, train_tokens=3000, val_tokens=1, seed=0).splits["train"].shape == (3, 1000)
    short = data.GrammarTask(block_size=8, train_tokens=50, val_tokens=50, stream_length=5, seed=0)
    assert short.splits["train"].shape == (5, 10)  # rows of block_size + 2 = 10 tokens
    assert short.grammar is not None
    x, _ = short.batch("train", 2, seed=0, step=0)
    np.testing.assert_array_equal(short.true_probs(x), grammar.true_next_token_probs(G, backend.to_numpy(x)))


def window_tasks(tmp_path):
    return [data.GrammarTask(block_size=8, train_tokens=3000, val_tokens=1000, stream_length=100, seed=2),
            data.text_task(str(pangram_file(tmp_path)), block_size=7)]


def test_window_starts_are_every_place_a_whole_window_fits(tmp_path):
    """Each listed start has block_size + 1 tokens after it in its row; the text task lists every such place,
    the grammar task every sentence start (``.``) among them."""
    grammar_task, text = window_tasks(tmp_path)
    for task in (grammar_task, text):
        for split, tokens in task.splits.items():
            rows, cols = task.starts[split]
            assert len(rows) == len(cols) == task.num_windows(split) > 0
            assert (cols + task.block_size + 1 <= tokens.shape[1]).all()
    for split, tokens in text.splits.items():
        np.testing.assert_array_equal(text.starts[split][1], np.arange(tokens.shape[1] - text.block_size))
    for split, tokens in grammar_task.splits.items():
        fits = tokens[:, : tokens.shape[1] - grammar_task.block_size] == G.words.index(".")
        assert len(grammar_task.starts[split][0]) == fits.sum()


def test_window_batches_draw_every_window_and_depend_on_seed_and_step(tmp_path):
    for task in window_tasks(tmp_path):
        n = task.num_windows("train")
        x, _ = task.batch("train", 40 * n, seed=0, step=0)
        rows, cols = task.starts["train"]
        windows = {tuple(task.splits["train"][r, c: c + task.block_size]) for r, c in zip(rows, cols)}
        assert {tuple(row) for row in backend.to_numpy(x)} == windows  # P(a window never drawn) < n·e^-40
        one = backend.to_numpy(task.batch("train", 8, seed=0, step=1)[0])
        assert not np.array_equal(one, backend.to_numpy(task.batch("train", 8, seed=1, step=1)[0]))
        assert not np.array_equal(one, backend.to_numpy(task.batch("train", 8, seed=0, step=2)[0]))


def test_window_eval_set_spreads_n_windows_from_the_first_to_the_last(tmp_path):
    text = window_tasks(tmp_path)[1]
    count = text.num_windows("val")
    tokens = text.splits["val"][0]
    for n, picks in ((3, [0, round((count - 1) / 2), count - 1]), (count + 5, list(range(count)))):
        x, y = (backend.to_numpy(a) for a in text.eval_set("val", n))
        np.testing.assert_array_equal(x, [tokens[c: c + 7] for c in picks])
        np.testing.assert_array_equal(y, [tokens[c + 1: c + 8] for c in picks])


def test_addition_pairs_shift_by_one_and_are_copies():
    task = data.AdditionTask(digits=2, train_examples=30, val_examples=5, seed=0)
    examples = task.examples["train"].copy()
    x, y = task.pairs(task.examples["train"])
    assert x.shape == y.shape == (30, task.block_size)
    scored = backend.to_numpy(y) != data.IGNORE_INDEX
    np.testing.assert_array_equal(backend.to_numpy(y)[scored], examples[:, 1:][scored])
    np.testing.assert_array_equal(backend.to_numpy(x), examples[:, :-1])
    x[...] = 0
    y[...] = 0
    np.testing.assert_array_equal(task.examples["train"], examples)  # writing into a batch leaves the task alone
    device_x, _ = task.pairs(backend.from_numpy(examples))  # device arrays are accepted too
    np.testing.assert_array_equal(backend.to_numpy(device_x), examples[:, :-1])


def test_addition_batches_draw_every_problem_and_depend_on_seed_and_step():
    task = data.AdditionTask(digits=1, train_examples=20, val_examples=5, seed=0)
    x, _ = task.batch("train", 800, seed=0, step=0)
    assert len({tuple(row) for row in backend.to_numpy(x)}) == 20  # P(a problem never drawn) < 20·e^-40
    one = backend.to_numpy(task.batch("train", 8, seed=0, step=1)[0])
    assert not np.array_equal(one, backend.to_numpy(task.batch("train", 8, seed=1, step=1)[0]))
    assert not np.array_equal(one, backend.to_numpy(task.batch("train", 8, seed=0, step=2)[0]))
    x, y = task.eval_set("val", 3)
    np.testing.assert_array_equal(backend.to_numpy(x), task.examples["val"][:3, :-1])


def test_addition_vocabulary_is_the_digits_plus_and_equals():
    task = data.AdditionTask(digits=1, train_examples=5, val_examples=5)
    assert task.tokenizer.symbols == tuple("0123456789+=") and task.tokenizer.vocab_size == 12


class FixedAnswers:
    """A stand-in model whose greedy completion of prompt i is ``answers[i]``."""

    def __init__(self, task, answers):
        self.task, self.answers = task, answers

    def generate(self, prompts, max_new_tokens, temperature):
        assert temperature == 0 and max_new_tokens == self.task.digits + 1  # greedy, the whole answer
        rows = backend.to_numpy(prompts)
        return backend.from_numpy(np.concatenate([rows, self.answers[: len(rows)]], axis=1))


@pytest.mark.parametrize("split", ["train", "val"])
def test_accuracy_is_the_exact_match_rate_of_greedy_answers(split):
    task = data.AdditionTask(digits=2, train_examples=20, val_examples=10, seed=0)
    prompts, answers = (backend.to_numpy(a) for a in task.prompts_and_answers(split, 8))
    np.testing.assert_array_equal(np.concatenate([prompts, answers], axis=1), task.examples[split][:8])
    wrong = task.examples[split][:, task.prompt_length:].copy()
    wrong[1, 0] = (wrong[1, 0] + 1) % 10  # one digit wrong: the whole answer is wrong
    wrong[2, :] = (wrong[2, :] + 1) % 10
    wrong[6, -1] = (wrong[6, -1] + 3) % 10
    assert task.accuracy(FixedAnswers(task, wrong), split, n=8) == 5 / 8
    assert task.accuracy(FixedAnswers(task, wrong), split, n=2) == 1 / 2
    assert task.accuracy(FixedAnswers(task, task.examples[split][:, task.prompt_length:]), split) == 1.0


def test_accuracy_defaults_to_the_first_500_validation_problems():
    task = data.AdditionTask(digits=2, train_examples=20, val_examples=600, seed=0)
    answers = task.examples["val"][:, task.prompt_length:].copy()
    answers[500:] = (answers[500:] + 1) % 10  # wrong beyond the first 500
    assert task.accuracy(FixedAnswers(task, answers)) == 1.0


def test_with_train_examples_replaces_training_only_and_checks_the_shape():
    task = data.AdditionTask(digits=1, train_examples=20, val_examples=5, seed=0)
    before = {k: v.copy() for k, v in task.examples.items()}
    new = task.examples["train"][:7][:, ::-1].copy()
    relabelled = task.with_train_examples(new)
    assert relabelled.examples["train"] is new and relabelled.examples["val"] is task.examples["val"]
    assert relabelled.digits == task.digits and relabelled.prompt_length == task.prompt_length
    for split in before:
        np.testing.assert_array_equal(task.examples[split], before[split])  # the original task is unchanged
    width = task.examples["train"].shape[1]
    for bad in (new[:, :-1], new[0], new[:0]):
        with pytest.raises(ValueError, match=re.escape(f"examples must have shape (n >= 1, {width}), got {bad.shape}")):
            task.with_train_examples(bad)


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
    (b"abcdefg" + b"z" * 81, "its val split has 8 characters, a window needs block_size \\+ 1 = 9"),
])
def test_text_task_errors(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        data.load_task("text", data=str(path), block_size=8)


def test_text_task_windows_fit_exactly_at_block_size_plus_one(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghi" * 10, encoding="utf-8")  # 90 characters: 81 train, 9 validation
    task = data.text_task(str(path), block_size=8)
    assert task.num_windows("val") == 1 and task.num_windows("train") == 81 - 8


def test_tokenizer_names_at_most_ten_unknown_symbols_sorted():
    tokenizer = data.Tokenizer("ab")
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'\]$"):
        tokenizer.encode("mlkjihgfedcab")  # 11 unknown symbols: c to m
    assert tokenizer.decode(np.array([[0, 1], [1, 0]])) == "abba"  # any shape, read row by row


def test_task_name_errors():
    with pytest.raises(ValueError, match="^task 'text' needs a data file: pass --data FILE$"):
        data.load_task("text")
    with pytest.raises(ValueError, match="task must be"):
        data.load_task("poetry")
