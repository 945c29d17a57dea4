"""Test helpers: arrays on the active backend, and the losses composed from primitive Tensor ops
(an independent reference for the fused closed forms)."""

import numpy as np

from minikd import Tensor, backend
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, train


def arr(x):
    """A NumPy array (or Python data) copied to the active backend."""
    return backend.from_numpy(np.asarray(x))


def tensor(x, grad=False):
    """A Tensor on the active backend."""
    return Tensor(arr(x), requires_grad=grad)


def params(model):
    """{name: host copy} of a model's parameters."""
    return {name: backend.to_numpy(p.data).copy() for name, p in model.named_parameters()}


def assert_same_params(a, b):
    """Two models' parameters are equal bit for bit."""
    expected = params(b)
    for name, value in params(a).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def softmax_np(x, T):
    """softmax(x/T) in plain NumPy, for expected values."""
    e = np.exp((x - x.max(axis=-1, keepdims=True)) / T)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x, T):
    """log softmax(x/T) from primitives; the max shift is a constant, so it does not change the gradient."""
    s = x / T
    shifted = s - Tensor(backend.xp().max(s.data, axis=-1, keepdims=True))
    return shifted - shifted.exp().sum(axis=-1, keepdims=True).log()


def divergence_rows(z, v, T, divergence, beta=0.5):
    """D(p_T ‖ q_T) per position, shape [N], from primitives (z is a Tensor [N, V], v an array)."""
    log_q, log_p = log_softmax(z, T), log_softmax(Tensor(v), T)
    q, p = log_q.exp(), log_p.exp()
    if divergence == "forward_kl":
        return (p * (log_p - log_q)).sum(axis=-1)
    if divergence == "reverse_kl":
        return (q * (log_q - log_p)).sum(axis=-1)
    log_m = (p * beta + q * (1 - beta)).log()
    return (p * (log_p - log_m)).sum(axis=-1) * beta + (q * (log_q - log_m)).sum(axis=-1) * (1 - beta)


def distillation_loss(z, v, targets, lam, T, divergence="forward_kl", beta=0.5, scale_T2=True,
                      form="interpolate", ignore_index=-100):
    """The distillation objective built from primitives, mirroring functional.distillation_loss."""
    V = z.shape[-1]
    z = z.reshape(-1, V)
    v = backend.xp().reshape(v, (-1, V))
    targets = backend.to_numpy(targets).reshape(-1)
    kept = np.flatnonzero(targets != ignore_index)
    rows, cols = backend.from_numpy(kept), backend.from_numpy(targets[kept])
    ce = -log_softmax(z, 1.0)[rows, cols].sum() / len(kept)
    d = divergence_rows(z, v, T, divergence, beta)[rows].sum() / len(kept)
    s = T * T if scale_T2 else 1.0
    return ce * (1 - lam) + d * (lam * s) if form == "interpolate" else ce + d * (lam * s)


def log_softmax_np(x, T=1.0):
    """log softmax(x/T) in plain float64 NumPy, for expected values."""
    s = np.asarray(x, dtype=np.float64) / T
    s = s - s.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def kl_np(p_logits, q_logits, T=1.0):
    """KL(softmax(p/T) ‖ softmax(q/T)) per position, in float64 NumPy."""
    log_p, log_q = log_softmax_np(p_logits, T), log_softmax_np(q_logits, T)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


def logits_np(model, x):
    """A model's logits for x as a float64 host array, in evaluation mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return backend.to_numpy(model(x).data).astype(np.float64)
    finally:
        model.train(was_training)


def greedy_np(model, prompts, n_tokens):
    """Greedy completion by repeated forward passes: an independent reference for ``generate``."""
    rows = np.asarray(prompts)
    for _ in range(n_tokens):
        nxt = logits_np(model, arr(rows[:, -model.config.block_size:]))[:, -1].argmax(axis=-1)
        rows = np.concatenate([rows, nxt[:, None]], axis=1)
    return rows


def briefly_trained(task, steps=20, seed=7, name="tiny", **overrides):
    """A preset model trained ``steps`` steps with cross-entropy: far from uniform, far from perfect."""
    model = TransformerLM(preset(name, task.tokenizer.vocab_size, task.block_size, **overrides), seed=seed)
    train(model, task, TrainConfig(steps=steps, batch_size=16, eval_every=steps, eval_windows=4, warmup=2),
          progress=False)
    return model.eval()
