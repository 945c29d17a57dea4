"""A GPT-style transformer-lite language model, small enough to read in one sitting.

token + position embeddings → n_layer pre-LN blocks (causal attention, GELU MLP) → LayerNorm →
logits over the vocabulary (the output layer shares the token embedding when ``tie_weights``).
Shape legend: B batch, S sequence (≤ block_size), C = n_embd channels, V vocabulary.
"""

import json
import math
from dataclasses import asdict, dataclass

from minikd.engine import backend, validate
from minikd.nn import layers
from minikd.engine.autograd import data_of, no_grad
from minikd.losses.divergences import softmax_parts
from minikd.nn.modules import Block, Dropout, Embedding, LayerNorm, Linear, Module


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    block_size: int  # the longest sequence the model reads
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    tie_weights: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):  # NumPy integers become ints
            object.__setattr__(self, name, validate.check_positive_int(name, getattr(self, name)))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")
        if not 0.0 <= validate.check_real("dropout", self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        validate.check_choice("dtype", self.dtype, ("float32", "float64"))
        if not isinstance(self.tie_weights, bool):
            raise TypeError(f"tie_weights must be a boolean (True or False), got {self.tie_weights!r}")

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


# Named sizes (layers, heads, width). "teacher" trains on the grammar to within 0.004 nats of the
# entropy floor in 1000 steps (about 35 s on a 2-core CPU).
PRESETS = {
    "tiny": dict(n_layer=1, n_head=2, n_embd=32),
    "small": dict(n_layer=2, n_head=2, n_embd=48),
    "teacher": dict(n_layer=3, n_head=4, n_embd=96),
}


def preset(name, vocab_size, block_size, **overrides):
    """The ModelConfig of a named preset (``tiny``, ``small``, ``teacher``) for a vocabulary and block size."""
    validate.check_choice("preset", name, tuple(PRESETS))
    return ModelConfig(vocab_size=vocab_size, block_size=block_size, **{**PRESETS[name], **overrides})


class TransformerLM(Module):
    """``model(idx)`` maps token ids (B, S) to next-token logits (B, S, V), a Tensor."""

    def __init__(self, config, seed=0):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config, self.seed = config, seed
        rng = backend.host_rng(seed)  # every initial weight from this one stream, in a fixed order
        c, dtype = config, config.dtype
        proj_std = 0.02 / math.sqrt(2 * c.n_layer)  # GPT-2: residual projections scaled by depth
        self.wte = Embedding(c.vocab_size, c.n_embd, rng, dtype)  # (V, C)
        self.wpe = Embedding(c.block_size, c.n_embd, rng, dtype)  # (block_size, C)
        self.drop = Dropout(c.dropout, seed, (0,))
        self.blocks = [Block(c.n_embd, c.n_head, rng, dtype, proj_std, c.dropout, seed, layer=i + 1)
                       for i in range(c.n_layer)]
        self.ln_f = LayerNorm(c.n_embd, dtype)
        self.lm_head = None if c.tie_weights else Linear(c.n_embd, c.vocab_size, rng, dtype, bias=False)

    def check_idx(self, idx):
        """``idx`` as a backend int array of shape (B, S), S ≤ block_size, ids in [0, V); else ValueError."""
        idx = data_of(idx)
        if not backend.is_int_dtype(idx.dtype):
            raise TypeError(f"idx must hold integer token ids, got dtype {backend.dtype_name(idx.dtype)}")
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (batch, sequence), got shape {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds block_size={self.config.block_size}")
        if idx.size:  # checked on the host: CuPy would wrap an out-of-range id silently
            xp = backend.xp()
            low, high = int(xp.min(idx)), int(xp.max(idx))  # two synchronisations per forward
            if low < 0 or high >= self.config.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"idx holds token id {bad}, outside the vocabulary [0, {self.config.vocab_size})")
        return idx

    def forward(self, idx, return_hidden=False):
        """Logits (B, S, V); with ``return_hidden``, also the residual stream after the embeddings and
        after each block: a list of n_layer + 1 Tensors of shape (B, S, C)."""
        idx = self.check_idx(idx)
        positions = backend.xp().arange(idx.shape[1], device=backend.device())  # (S,)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, S, C) + (S, C)
        hiddens = [x]
        for block in self.blocks:
            x = block(x)  # (B, S, C)
            hiddens.append(x)
        x = self.ln_f(x)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight  # (V, C)
        logits = layers.linear(x, head)  # (B, S, V)
        return (logits, hiddens) if return_hidden else logits

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=0, keys=()):
        """Append ``max_new_tokens`` tokens to each row of ``idx`` (B, S), one at a time.

        Each step reads the last ``block_size`` tokens, takes the last position's logits / temperature,
        keeps the ``top_k`` largest (if given) and samples with ``rng(seed, *keys, step)``; temperature 0
        is greedy (argmax). ``keys`` give independent draws to separate calls (e.g. one per batch). Runs in evaluation mode without a graph; returns a (B, S + max_new_tokens) array.
        """
        xp = backend.xp()
        idx = self.check_idx(idx)
        if validate.check_integer("max_new_tokens", max_new_tokens) < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        if not validate.check_real("temperature", temperature) >= 0:
            raise ValueError(f"temperature must be a number >= 0 (0 is greedy, inf uniform), got {temperature!r}")
        if top_k is not None and validate.check_integer("top_k", top_k) < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for step in range(int(max_new_tokens)):
                    window = idx[:, max(0, idx.shape[1] - self.config.block_size):]  # the last block_size tokens
                    logits = self(window).data[:, -1, :]  # (B, V)
                    token = _pick_next(logits, temperature, top_k, backend.rng(seed, *keys, step))  # (B,)
                    idx = xp.concat([idx, xp.astype(token[:, None], idx.dtype)], axis=1)
        finally:
            self.train(was_training)
        return idx


def _pick_next(logits, temperature, top_k, rng):
    """One token per row from (B, V) logits: argmax when temperature is 0, else a sample drawn with ``rng``;
    temperature ∞ is the limit of softmax(z/T): uniform over the tokens kept (all, or the top k)."""
    xp = backend.xp()
    if temperature == 0:
        return xp.argmax(logits, axis=-1)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = xp.sort(logits, axis=-1)[:, -int(top_k)][:, None]  # (B, 1): the k-th largest logit
        logits = xp.where(logits < kth, -math.inf, logits)
    if math.isinf(temperature):  # the limit T -> ∞: uniform over the tokens still allowed
        kept = xp.astype(logits > -math.inf, logits.dtype)  # (B, V)
        probs = kept / xp.sum(kept, axis=-1, keepdims=True)
    else:
        probs, _ = softmax_parts(logits, float(temperature))  # (B, V); masked logits get probability 0
    cdf = xp.cumulative_sum(probs, axis=-1)  # (B, V)
    u = rng.random((logits.shape[0], 1))  # (B, 1)
    below = xp.sum(xp.astype(u >= cdf, xp.int64), axis=-1)  # (B,): how many cdf entries u passes
    return xp.clip(below, max=logits.shape[-1] - 1)  # inverse-CDF sample
