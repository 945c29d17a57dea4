"""``minikd check``: the distillation loss on random logits, then a gradient check of every op.

A self-test a student can run on any machine (and on the GPU with MINIKD_BACKEND=cupy).
"""

import math

from minikd.engine import backend
from minikd.losses import functional as F
from minikd.engine.autograd import Tensor
from minikd.losses.divergences import DIVERGENCES
from minikd.engine.gradcheck import GradcheckError, gradcheck


def op_cases(seed=0):
    """(name, fn, inputs) for every differentiable op, on small float64 inputs away from kinks."""
    rng = backend.rng(seed)
    xp = backend.xp()

    def leaf(*shape, low=None):
        data = rng.standard_normal(shape) if low is None else rng.uniform(low, 2.0, shape)
        return Tensor(xp.astype(data, backend.dtype("float64")), requires_grad=True)

    a, b, pos = leaf(2, 3, 4), leaf(3, 4), leaf(2, 3, 4, low=0.5)
    z, v = leaf(4, 6), rng.standard_normal((4, 6))
    y = xp.asarray([1, 5, -100, 0], device=backend.device())
    rows = xp.asarray([1, 0, 1], device=backend.device())  # a repeated row: its gradient adds up
    return [
        ("add (broadcast)", lambda a, b: a + b, (a, b)),
        ("sub (broadcast)", lambda a, b: a - b, (a, b)),
        ("mul (broadcast)", lambda a, b: a * b, (a, b)),
        ("div", lambda a, p: a / p, (a, pos)),
        ("neg", lambda a: -a, (a,)),
        ("pow", lambda p: p**2.5, (pos,)),
        ("matmul (batched)", lambda a, b: a @ b.transpose(1, 0), (a, b)),
        ("sum", lambda a: a.sum(axis=(0, 2)), (a,)),
        ("mean", lambda a: a.mean(axis=1, keepdims=True), (a,)),
        ("max", lambda a: a.max(axis=-1), (a,)),
        ("reshape", lambda a: a.reshape(4, 6), (a,)),
        ("transpose", lambda a: a.transpose(2, 0, 1), (a,)),
        ("getitem (gather)", lambda a: a[rows], (a,)),
        ("getitem (slice)", lambda a: a[:, 1:3, ...], (a,)),
        ("exp", lambda a: a.exp(), (a,)),
        ("log", lambda p: p.log(), (pos,)),
        ("softmax T=2", lambda z: F.softmax(z, T=2.0), (z,)),
        ("log_softmax T=0.5", lambda z: F.log_softmax(z, T=0.5), (z,)),
        ("nll_loss", lambda z: F.nll_loss(F.log_softmax(z), y), (z,)),
        ("cross_entropy", lambda z: F.cross_entropy(z, y), (z,)),
        ("kl_div forward T=2", lambda z: F.kl_div(z, v, T=2.0), (z,)),
        ("kl_div reverse T=2", lambda z: F.kl_div(z, v, T=2.0, direction="reverse"), (z,)),
        ("jsd beta=0.3 T=2", lambda z: F.jsd(z, v, T=2.0, beta=0.3), (z,)),
    ] + [
        (f"distillation_loss {div} {form}",
         lambda z, div=div, form=form: F.distillation_loss(z, v, y, lam=0.4, T=3.0, divergence=div, form=form),
         (z,))
        for div in DIVERGENCES
        for form in F.FORMS
    ]


def run(seed=0, out=print):
    """Print the loss on random logits and a gradient-check table; return True when every check passes."""
    rng = backend.rng(seed)
    xp = backend.xp()
    z = xp.astype(rng.standard_normal((8, 16, 50)), backend.dtype("float32")) * 3
    v = xp.astype(rng.standard_normal((8, 16, 50)), backend.dtype("float32")) * 3
    y = rng.integers(0, 50, size=(8, 16))
    out(f"minikd check  (backend {backend.name()}, seed {seed})")
    out("distillation loss on random logits [8, 16, 50], lam=0.5, T=2:")
    for divergence in DIVERGENCES:
        loss = F.distillation_loss(Tensor(z), v, y, lam=0.5, T=2.0, divergence=divergence)
        out(f"  {divergence:<11s} {loss.item():.6f}")
    out(f"  cross-entropy alone {F.cross_entropy(Tensor(z), y).item():.6f} (log V = {math.log(50.0):.6f})")
    out("")
    out(f"{'op':<40s} {'max abs err':>12s} {'max rel err':>12s}  result")
    passed = True
    for name, fn, inputs in op_cases(seed):
        try:
            report, verdict = gradcheck(fn, *inputs), "ok"
        except GradcheckError as err:
            report, verdict, passed = err.report, "FAILED", False
        out(f"{name:<40s} {report.max_abs_error:12.2e} {report.max_rel_error:12.2e}  {verdict}")
    out("")
    out("all gradients agree with central differences" if passed else "some gradients are WRONG")
    return passed


def add_commands(commands):
    """``minikd check``."""
    parser = commands.add_parser("check", help="the distillation loss on random logits and a gradient check of every op")
    parser.add_argument("--seed", type=int, default=0, help="random logits and cotangents")
    parser.set_defaults(run=lambda args: 0 if run(seed=args.seed) else 1)
