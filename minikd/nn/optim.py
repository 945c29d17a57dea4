"""Optimizers (SGD with momentum, AdamW) and clipping of the gradient's global norm.

Updates happen in place on each parameter's array. An optimizer's state (moments, step count) is a
dict of arrays, so it goes into a checkpoint beside the parameters.
"""

import math

from minikd.engine import backend, validate


def _check_number(name, value, low, high=math.inf, low_open=False):
    validate.check_real(name, value)
    if not math.isfinite(value) or value < low or (low_open and value == low) or value >= high:
        interval = f"{'(' if low_open else '['}{low}, {high})"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


class Optimizer:
    """Holds the parameters (each once, in order) and the learning rate ``lr`` (settable per step)."""

    def __init__(self, params, lr):
        self.params = list({id(p): p for p in params}.values())
        if not self.params:
            raise ValueError("params is empty: the optimizer has nothing to update")
        if any(not p.requires_grad for p in self.params):
            raise ValueError("every parameter given to an optimizer must have requires_grad=True")
        self.lr = _check_number("lr", lr, 0.0)
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def step(self):
        """Update every parameter that has a gradient."""
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p)

    def state_dict(self):
        xp = backend.xp()
        state = {"steps": xp.asarray(self.steps, device=backend.device())}
        for key, buffers in self._buffers().items():
            state.update({f"{key}.{i}": xp.asarray(buffer, copy=True) for i, buffer in enumerate(buffers)})
        return state

    def load_state_dict(self, state):
        self.steps = int(state["steps"])
        for key, buffers in self._buffers().items():
            for i, buffer in enumerate(buffers):
                value = state[f"{key}.{i}"]
                if tuple(value.shape) != buffer.shape:
                    raise ValueError(f"optimizer state {key}.{i} has shape {tuple(value.shape)}, expected {buffer.shape}")
                buffer[...] = backend.from_numpy(value)

    def _buffers(self):
        return {}

    def _update(self, i, p):
        raise NotImplementedError


class SGD(Optimizer):
    """v ← μ·v + g;  θ ← θ − lr·v   (plain gradient descent when momentum μ = 0)."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0)
        self.velocity = [backend.xp().zeros_like(p.data) for p in self.params]

    def _buffers(self):
        return {"velocity": self.velocity}

    def _update(self, i, p):
        velocity = self.velocity[i]
        velocity *= self.momentum
        velocity += p.grad
        p.data -= self.lr * velocity


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), with bias correction:

    m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²,  θ ← θ − lr·[m̂ / (√v̂ + ε) + wd·θ],
    m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ). As in GPT-2, decay applies to matrices only (ndim ≥ 2), not to
    biases and LayerNorm gains.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _check_number("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = _check_number("betas[1]", betas[1], 0.0, 1.0)
        self.eps = _check_number("eps", eps, 0.0, low_open=True)
        self.weight_decay = _check_number("weight_decay", weight_decay, 0.0)
        xp = backend.xp()
        self.m = [xp.zeros_like(p.data) for p in self.params]
        self.v = [xp.zeros_like(p.data) for p in self.params]

    def _buffers(self):
        return {"m": self.m, "v": self.v}

    def _update(self, i, p):
        xp = backend.xp()
        g, m, v = p.grad, self.m[i], self.v[i]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        if self.weight_decay and p.ndim >= 2:
            p.data *= 1.0 - self.lr * self.weight_decay  # decoupled: not part of the gradient
        bias1 = 1.0 - self.beta1 ** self.steps
        bias2 = 1.0 - self.beta2 ** self.steps
        denominator = xp.sqrt(v) / math.sqrt(bias2) + self.eps  # √v̂ + ε
        p.data -= (self.lr / bias1) * (m / denominator)


def clip_grad_norm(params, max_norm):
    """Scale all gradients by min(1, max_norm / ‖g‖), ‖g‖ the norm of all of them together.

    Returns ‖g‖ before clipping as a 0-d array on the device (reading it is left to the caller,
    so no host round trip happens here).
    """
    max_norm = _check_number("max_norm", max_norm, 0.0, low_open=True)
    xp = backend.xp()
    grads = [p.grad for p in {id(p): p for p in params}.values() if p.grad is not None]
    if not grads:
        return xp.zeros((), device=backend.device())
    norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
    scale = xp.astype(xp.clip(max_norm / (norm + 1e-6), max=1.0), grads[0].dtype)  # min(1, max_norm/‖g‖)
    for g in grads:
        g *= scale
    return norm
