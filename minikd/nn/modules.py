"""Modules: layers that own their parameters (``Module``), built on the ops of ``layers.py``.

A Module finds its parameters by walking its attributes, so ``parameters()``, ``state_dict()`` and
``train()``/``eval()`` need no registration. Initial weights come from a seeded host generator:
the same seed gives the same model on NumPy and on CuPy.
"""

from minikd.engine import backend
from minikd.nn import layers
from minikd.engine.autograd import Tensor


def _parameter(values, dtype):
    """A leaf Tensor that requires grad, from host values, on the active backend."""
    return Tensor(backend.xp().astype(backend.from_numpy(values), backend.dtype(dtype)), requires_grad=True)


class Module:
    """Base class: ``forward`` does the work, ``__call__`` runs it; ``training`` switches dropout."""

    training = True
    _int_state = ()  # names of integer attributes saved in the state dict (counters), besides parameters

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def children(self):
        """(name, module) for every sub-module, lists included (``blocks.0``, ``blocks.1``, ...)."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                yield from ((f"{name}.{i}", m) for i, m in enumerate(value) if isinstance(m, Module))

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.children():
            yield from child.named_modules(f"{prefix}{name}.")

    def named_parameters(self):
        """(dotted name, Tensor) for every parameter, in a fixed order (attribute order, depth first)."""
        for prefix, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Tensor) and value.requires_grad:
                    yield prefix + name, value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_params(self):
        """The number of scalar parameters (a tied weight counts once)."""
        return sum(p.size for p in {id(p): p for p in self.parameters()}.values())

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        """Training mode (dropout on) or, with ``mode=False``, evaluation mode. Returns self."""
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        """{name: array} of every parameter (a copy) and integer counter, for checkpoints."""
        xp = backend.xp()
        state = {name: xp.asarray(p.data, copy=True) for name, p in self.named_parameters()}
        for prefix, module in self.named_modules():
            state.update({prefix + name: xp.asarray(getattr(module, name), device=backend.device())
                          for name in module._int_state})
        return state

    def load_state_dict(self, state):
        """Copy values into the parameters and counters; keys and shapes must match exactly."""
        expected = self.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"state dict does not match the model: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if tuple(value.shape) != tuple(expected[name].shape):
                raise ValueError(f"state dict entry {name!r} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(expected[name].shape)}")
        params = dict(self.named_parameters())
        for prefix, module in self.named_modules():
            for name in module._int_state:
                setattr(module, name, int(state[prefix + name]))
        for name, p in params.items():
            p.data = backend.xp().astype(backend.from_numpy(state[name]), p.dtype, copy=True)
        return self


class Linear(Module):
    def __init__(self, c_in, c_out, rng, dtype, bias=True, std=0.02):
        self.weight = _parameter(rng.standard_normal((c_out, c_in)) * std, dtype)  # (C_out, C_in)
        self.bias = _parameter(backend.host_xp().zeros(c_out), dtype) if bias else None

    def forward(self, x):
        return layers.linear(x, self.weight, self.bias)


class Embedding(Module):
    def __init__(self, num, dim, rng, dtype, std=0.02):
        self.weight = _parameter(rng.standard_normal((num, dim)) * std, dtype)  # (num, C)

    def forward(self, idx):
        return layers.embedding(idx, self.weight)


class LayerNorm(Module):
    def __init__(self, dim, dtype, eps=1e-5):
        self.gamma = _parameter(backend.host_xp().ones(dim), dtype)
        self.beta = _parameter(backend.host_xp().zeros(dim), dtype)
        self.eps = eps

    def forward(self, x):
        return layers.layer_norm(x, self.gamma, self.beta, self.eps)


class Dropout(Module):
    """Seeded dropout: call k of this layer draws its mask from ``rng(seed, *stream, k)``; identity in eval."""

    _int_state = ("calls",)

    def __init__(self, p, seed, stream):
        self.p, self.seed, self.stream, self.calls = float(p), seed, tuple(stream), 0

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        self.calls += 1
        return layers.dropout(x, self.p, self.seed, self.stream + (self.calls,))


class CausalSelfAttention(Module):
    def __init__(self, n_embd, n_head, rng, dtype, proj_std, dropout):
        self.n_head = n_head
        self.qkv = Linear(n_embd, 3 * n_embd, rng, dtype)
        self.proj = Linear(n_embd, n_embd, rng, dtype, std=proj_std)
        self.dropout = dropout

    def forward(self, x):  # x (B, S, C)
        y = layers.causal_self_attention(self.qkv(x), self.n_head)  # (B, S, 3C) -> (B, S, C)
        return self.dropout(self.proj(y))


class MLP(Module):
    def __init__(self, n_embd, rng, dtype, proj_std, dropout):
        self.fc = Linear(n_embd, 4 * n_embd, rng, dtype)
        self.proj = Linear(4 * n_embd, n_embd, rng, dtype, std=proj_std)
        self.dropout = dropout

    def forward(self, x):  # x (B, S, C)
        return self.dropout(self.proj(layers.gelu(self.fc(x))))  # (B, S, 4C) -> (B, S, C)


class Block(Module):
    """A pre-LN residual block: x + attn(LN(x)), then x + mlp(LN(x)).

    ``dropout_p`` and ``seed``/``layer`` give the block's two Dropout layers their own mask streams.
    """

    def __init__(self, n_embd, n_head, rng, dtype, proj_std, dropout_p, seed, layer):
        self.ln1 = LayerNorm(n_embd, dtype)
        self.attn = CausalSelfAttention(n_embd, n_head, rng, dtype, proj_std, Dropout(dropout_p, seed, (layer, 0)))
        self.ln2 = LayerNorm(n_embd, dtype)
        self.mlp = MLP(n_embd, rng, dtype, proj_std, Dropout(dropout_p, seed, (layer, 1)))

    def forward(self, x):  # x (B, S, C)
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))
