"""The built-in tasks, generated from a seed: the grammar language, addition, and the user's own text.

A task has a tokenizer, train and validation splits, and ``batch(split, batch_size, seed, step)``:
the batch of step t depends only on (seed, t), so a run resumed at step t sees the same batches.
Data lives on the host (NumPy) and each batch is moved to the active backend.
"""

import copy
import os

from minikd.engine import backend, validate
from minikd.tasks import grammar

IGNORE_INDEX = -100


class Tokenizer:
    """Symbols (words or characters) <-> ids; ``sep`` joins decoded symbols (" " for words, "" for characters)."""

    def __init__(self, symbols, sep=""):
        self.symbols, self.sep = tuple(symbols), sep
        self.ids = {s: i for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self):
        return len(self.symbols)

    def encode(self, text):
        parts = text.split() if self.sep == " " else list(text)
        unknown = sorted({p for p in parts if p not in self.ids})
        if unknown:
            raise ValueError(f"text holds symbols outside the vocabulary: {unknown[:10]}")
        return [self.ids[p] for p in parts]

    def decode(self, ids):
        return self.sep.join(self.symbols[int(i)] for i in backend.to_numpy(ids).reshape(-1))


class WindowTask:
    """Language modelling on windows of ``block_size + 1`` tokens cut from rows of text.

    ``train``/``val`` are (rows, length) host arrays; ``starts`` lists where a window may begin.
    Input x = window[:-1], target y = window[1:].
    """

    has_accuracy = False

    def __init__(self, name, tokenizer, block_size, splits, starts):
        self.name, self.tokenizer, self.block_size = name, tokenizer, block_size
        self.splits, self.starts = splits, starts  # {"train"|"val": tokens}, {"train"|"val": (rows, cols)}

    def _windows(self, split, picks):
        np = backend.host_xp()
        rows, cols = self.starts[split]
        offsets = cols[picks][:, None] + np.arange(self.block_size + 1)  # (B, S + 1)
        window = self.splits[split][rows[picks][:, None], offsets]
        return backend.from_numpy(window[:, :-1]), backend.from_numpy(window[:, 1:])

    def num_windows(self, split):
        return len(self.starts[split][0])

    def batch(self, split, batch_size, seed, step):
        """(x, y), each (batch_size, block_size): windows drawn with ``host_rng(seed, step)``."""
        picks = backend.host_rng(seed, step).integers(0, self.num_windows(split), batch_size)
        return self._windows(split, picks)

    def eval_set(self, split, n):
        """n fixed windows spread evenly over the split (the same every time): (x, y)."""
        np = backend.host_xp()
        count = self.num_windows(split)
        return self._windows(split, np.linspace(0, count - 1, min(n, count)).round().astype(np.int64))


class GrammarTask(WindowTask):
    """The grammar language: every window begins at a ``.``, so its true distribution is known."""

    def __init__(self, block_size=32, train_tokens=200_000, val_tokens=20_000, seed=0, stream_length=1000):
        np = backend.host_xp()
        g = grammar.build()
        length = max(stream_length, block_size + 2)
        splits, starts = {}, {}
        for key, (split, n_tokens) in enumerate((("train", train_tokens), ("val", val_tokens))):
            splits[split] = grammar.sample(g, max(1, -(-n_tokens // length)), length, seed, key)  # (rows, length)
            rows, cols = np.nonzero(splits[split][:, : length - block_size] == g.words.index(grammar.END))
            starts[split] = (rows, cols)  # every "." with a whole window after it
        super().__init__("grammar", Tokenizer(g.words, " "), block_size, splits, starts)
        self.grammar = g

    def true_probs(self, x):
        """The exact next-token distribution at every position of x (B, S): a host array (B, S, V)."""
        return grammar.true_next_token_probs(self.grammar, backend.to_numpy(x))


class AdditionTask:
    """``"123+045=0168"``: zero-padded operands of ``digits`` digits, answer of digits + 1 digits.

    Only the answer is scored: targets at prompt positions are ``IGNORE_INDEX``. Train and
    validation problems are disjoint.
    """

    has_accuracy = True

    def __init__(self, digits=3, train_examples=20_000, val_examples=1_000, seed=0):
        np = backend.host_xp()
        if not 1 <= validate.check_integer("digits", digits) <= 6:
            raise ValueError(f"digits must be an integer in 1..6, got {digits!r}")
        n_problems = 10 ** (2 * digits)
        if train_examples + val_examples > n_problems:
            raise ValueError(f"train_examples + val_examples = {train_examples + val_examples} exceeds the "
                             f"{n_problems} distinct problems with {digits} digits")
        self.name, self.digits = "addition", digits
        self.tokenizer = Tokenizer("0123456789+=")
        self.prompt_length = 2 * digits + 2  # "123+045="
        self.block_size = self.prompt_length + digits  # the sequence is prompt + (digits + 1) answer digits
        problems = backend.host_rng(seed).choice(n_problems, train_examples + val_examples, replace=False)
        a, b = np.divmod(problems, 10 ** digits)
        self.examples = {"train": self._encode(a[:train_examples], b[:train_examples]),
                         "val": self._encode(a[train_examples:], b[train_examples:])}

    def _encode(self, a, b):
        np = backend.host_xp()
        d = self.digits
        text = [f"{x:0{d}d}+{y:0{d}d}={x + y:0{d + 1}d}" for x, y in zip(a.tolist(), b.tolist())]
        return np.array([self.tokenizer.encode(t) for t in text], dtype=np.int64).reshape(len(text), -1)

    def pairs(self, examples):
        """(x, y) of whole sequences (n, prompt + answer) on the backend; y is ``IGNORE_INDEX`` on the prompt."""
        xp = backend.xp()
        examples = backend.from_numpy(examples)  # host examples move to the device; device ones stay
        y = xp.asarray(examples[:, 1:], copy=True)  # a copy, never a view: the examples stay as they are
        y[:, : self.prompt_length - 1] = IGNORE_INDEX  # predictions of prompt tokens are not scored
        return xp.asarray(examples[:, :-1], copy=True), y

    def batch(self, split, batch_size, seed, step):
        picks = backend.host_rng(seed, step).integers(0, len(self.examples[split]), batch_size)
        return self.pairs(self.examples[split][picks])

    def eval_set(self, split, n):
        return self.pairs(self.examples[split][:n])

    def with_train_examples(self, examples):
        """A copy of this task whose training sequences are ``examples`` (n, prompt + answer), e.g. a
        teacher's completions; validation is unchanged, so the copy is scored against the ground truth."""
        width = self.examples["train"].shape[1]
        if examples.ndim != 2 or examples.shape[1] != width or len(examples) == 0:
            raise ValueError(f"examples must have shape (n >= 1, {width}), got {examples.shape}")
        relabelled = copy.copy(self)
        relabelled.examples = {**self.examples, "train": examples}
        return relabelled

    def prompts_and_answers(self, split, n):
        """(prompts (n, prompt_length), answers (n, digits + 1)) as backend arrays."""
        examples = self.examples[split][:n]
        return backend.from_numpy(examples[:, : self.prompt_length]), backend.from_numpy(examples[:, self.prompt_length:])

    def accuracy(self, model, split="val", n=500):
        """Exact-match rate of greedy completions of the first n prompts (every answer digit right)."""
        prompts, answers = self.prompts_and_answers(split, n)
        completion = model.generate(prompts, self.digits + 1, temperature=0)[:, self.prompt_length:]
        xp = backend.xp()
        exact = xp.all(completion == answers, axis=1)  # (n,)
        return float(xp.mean(xp.astype(exact, xp.float64)))


def text_task(path, block_size=64, val_fraction=0.1):
    """A character-level task from a UTF-8 text file: the last ``val_fraction`` (10 %) validates, the rest trains."""
    np = backend.host_xp()
    if not 0.0 < validate.check_real("val_fraction", val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be a fraction in (0, 1), got {val_fraction!r}")
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist (or is not a file)")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise ValueError(f"data file {path!r} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"data file {path!r} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if "\x00" in text:
        raise ValueError(f"data file {path!r} holds NUL bytes: it looks binary, not text")
    tokenizer = Tokenizer(sorted(set(text)))
    tokens = np.array(tokenizer.encode(text), dtype=np.int64)
    n_val = int(len(tokens) * val_fraction)
    splits = {"train": tokens[: len(tokens) - n_val][None, :], "val": tokens[len(tokens) - n_val:][None, :]}
    for split, t in splits.items():
        if t.shape[1] < block_size + 1:
            raise ValueError(f"data file {path!r} is too short: its {split} split has {t.shape[1]} characters, "
                             f"a window needs block_size + 1 = {block_size + 1}")
    starts = {split: (np.zeros(t.shape[1] - block_size, dtype=np.int64), np.arange(t.shape[1] - block_size))
              for split, t in splits.items()}
    return WindowTask("text", tokenizer, block_size, splits, starts)


TASKS = ("grammar", "addition", "text")  # the names ``load_task`` knows


def load_task(name, seed=0, data=None, **sizes):
    """A task by name: ``grammar``, ``addition`` or ``text`` (which needs ``data``, a file path)."""
    if name == "grammar":
        return GrammarTask(seed=seed, **sizes)
    if name == "addition":
        return AdditionTask(seed=seed, **sizes)
    if name == "text":
        if data is None:
            raise ValueError("task 'text' needs a data file: pass --data FILE")
        return text_task(data, **sizes)
    raise ValueError(f"task must be 'grammar', 'addition' or 'text', got {name!r}")
