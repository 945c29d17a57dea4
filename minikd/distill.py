"""Token-level distillation: a frozen teacher, a student, and the combined objective with schedules.

Per step: teacher logits under ``no_grad`` (the teacher is in evaluation mode and never sees an
optimizer), then ``distillation_loss(student(x), teacher(x), y, lam=λ(t), T=T(t))``. λ and T follow
schedules over the steps. Two knobs for the practical questions: ``label_noise`` corrupts a fraction
of the ground-truth labels, ``teacher_bias`` makes the teacher prefer a wrong token in one context.
"""

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, replace

from minikd import backend, schedules, validate
from minikd import functional as F
from minikd.autograd import no_grad
from minikd.data import IGNORE_INDEX
from minikd.divergences import DIVERGENCES


@dataclass(frozen=True)
class DistillConfig:
    lam: float = 0.5  # weight of the distillation term at step 0
    T: float = 2.0
    divergence: str = "forward_kl"  # or "reverse_kl", "jsd"
    form: str = "interpolate"  # (1 − λ)·CE + λ·T²·D, or the additive CE + λ·T²·D
    beta: float = 0.5  # JSD mixture weight
    lam_schedule: str = "constant"  # constant, linear, cosine, step: from lam to lam_end
    lam_end: float = 0.0
    T_schedule: str = "constant"  # from T to T_end
    T_end: float = 1.0
    label_noise: float = 0.0  # fraction of ground-truth labels replaced by a random token
    teacher_bias: tuple = ()  # (context token, wrong token, logit bonus): a systematic teacher error

    def __post_init__(self):
        validate.check_choice("form", self.form, ("interpolate", "additive"))
        validate.check_choice("divergence", self.divergence, tuple(DIVERGENCES))
        for name in ("lam", "lam_end"):
            validate.check_lam(getattr(self, name), self.form)
        for name in ("T", "T_end"):
            validate.check_temperature(getattr(self, name))
        for name in ("lam_schedule", "T_schedule"):
            validate.check_choice(name, getattr(self, name), ("constant", "linear", "cosine", "step"))
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be a fraction in [0, 1], got {self.label_noise!r}")
        if self.teacher_bias and len(self.teacher_bias) != 3:
            raise ValueError(f"teacher_bias must be (context token, wrong token, bonus), got {self.teacher_bias!r}")

    def schedules(self, steps):
        """(λ(t), T(t)) as schedule callables over ``steps`` steps."""
        return (schedules.make(self.lam_schedule, self.lam, self.lam_end, steps),
                schedules.make(self.T_schedule, self.T, self.T_end, steps))

    def to_dict(self):
        return asdict(self)


def check_pair(teacher, student):
    """The teacher and student must share a vocabulary (and the student may not read longer sequences)."""
    t, s = teacher.config, student.config
    if t.vocab_size != s.vocab_size:
        raise ValueError(f"teacher and student vocabularies differ: teacher vocab_size={t.vocab_size}, "
                         f"student vocab_size={s.vocab_size}")
    if s.block_size > t.block_size:
        raise ValueError(f"the student reads {s.block_size} tokens but the teacher only {t.block_size}")


def corrupt_labels(y, fraction, vocab_size, seed, step):
    """Replace each scored label, with probability ``fraction``, by a uniformly random token (seeded by step)."""
    if fraction == 0.0:
        return y
    rng = backend.rng(seed, 1_000_003, step)  # a stream apart from the batches'
    noisy = rng.integers(0, vocab_size, y.shape).astype(y.dtype)
    flip = (rng.random(y.shape) < fraction) & (y != IGNORE_INDEX)
    return backend.xp().where(flip, noisy, y)


def teacher_logits(teacher, x, bias=(), return_hidden=False):
    """The frozen teacher's logits for x as a raw array (no graph); with ``return_hidden``, also its
    residual streams (a list of arrays). With ``bias = (c, w, b)``, logit w gets +b wherever the
    current input token is c: a teacher that errs the same way every time."""
    with no_grad():
        out = teacher(x, return_hidden=return_hidden)
    logits, hiddens = out if return_hidden else (out, [])
    logits = logits.data  # (B, S, V)
    if bias:
        context, wrong, bonus = bias
        logits = logits.copy()
        logits[..., wrong] += bonus * (x == context)
    return (logits, [h.data for h in hiddens]) if return_hidden else logits


class Distiller:
    """The loss function ``train`` calls each step: ``distiller(student, x, y, step)``."""

    def __init__(self, teacher, config, steps, seed=0):
        check_bias(config.teacher_bias, teacher.config.vocab_size)
        self.teacher, self.config, self.seed = teacher.eval(), config, seed
        self.lam_at, self.T_at = config.schedules(steps)

    def __call__(self, student, x, y, step):
        return self.loss(student(x), teacher_logits(self.teacher, x, self.config.teacher_bias), y, step)

    def loss(self, z, v, y, step):
        """The objective at ``step`` from the student's logits z (a Tensor) and the teacher's v."""
        c = self.config
        y = corrupt_labels(y, c.label_noise, v.shape[-1], self.seed, step)
        return F.distillation_loss(z, v, y, lam=self.lam_at(step), T=self.T_at(step), divergence=c.divergence,
                                   beta=c.beta, form=c.form, ignore_index=IGNORE_INDEX)

    def describe(self, step):
        """The schedule's values at ``step``, logged with every evaluation."""
        return {"lam": self.lam_at(step), "T": self.T_at(step)}


def check_bias(bias, vocab_size):
    """``teacher_bias`` must name two token ids inside the vocabulary and a finite bonus."""
    if not bias:
        return
    context, wrong, bonus = bias
    for name, token in (("context", context), ("wrong", wrong)):
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
            raise ValueError(f"teacher_bias {name} token must be an id in [0, {vocab_size}), got {token!r}")
    if isinstance(bonus, bool) or not isinstance(bonus, (int, float)) or not math.isfinite(bonus):
        raise ValueError(f"teacher_bias bonus must be a finite number, got {bonus!r}")


def resolve_bias(bias, tokenizer):
    """``teacher_bias`` with its tokens as ids: a token given as a string is a symbol of ``tokenizer``
    (``("the", "cats", 4.0)``); ids pass through. A symbol outside the vocabulary is a ValueError."""
    if not bias:
        return ()
    *tokens, bonus = bias
    ids = []
    for name, token in zip(("context", "wrong"), tokens):
        if isinstance(token, str):
            if token not in tokenizer.ids:
                raise ValueError(f"teacher_bias {name} token {token!r} is not in the task's vocabulary")
            token = tokenizer.ids[token]
        ids.append(token)
    return (*ids, bonus)


def load_setting(teacher_dir, seed, task_name=None, data=None, train_tokens=None):
    """(checkpoint path, frozen teacher, task): the teacher's own task unless ``task_name`` says otherwise."""
    from minikd import checkpoint
    from minikd import data as tasks

    path = os.path.join(teacher_dir, "checkpoint.npz") if os.path.isdir(teacher_dir) else teacher_dir
    ckpt = checkpoint.load(path)  # read once: the weights and the task it was trained on
    teacher = ckpt.model(path)
    name = task_name or ckpt.meta.get("task", "grammar")
    sizes = {"block_size": teacher.config.block_size} if name in ("grammar", "text") else {}
    if train_tokens and name == "grammar":
        sizes["train_tokens"] = train_tokens
    return path, teacher, tasks.load_task(name, seed=seed, data=data, **sizes)


def new_student(student_preset, task, teacher, seed):
    from minikd.model import TransformerLM, preset

    student = TransformerLM(preset(student_preset, task.tokenizer.vocab_size, task.block_size), seed=seed)
    check_pair(teacher, student)
    return student


def run(teacher_dir, config, train_config, out, task_name=None, data=None, student_preset="small",
        train_tokens=None, completions=None, on_policy=0.0, hidden_weight=0.0, layer_map=None, progress=True,
        out_fn=print):
    """``minikd distill``: load the frozen teacher, train a student with ``config``; returns (student, history).

    ``completions`` (``"greedy"`` or ``"sampled"``): sequence-level KD, training on the teacher's
    completions of the prompts instead of the ground truth. ``on_policy`` = p: that fraction of steps
    learns on the student's own samples. ``hidden_weight`` = μ > 0 (or a ``layer_map``) adds
    hidden-state distillation. Everything is checked before anything is written.
    """
    from minikd import sequence
    from minikd.hidden import HiddenDistiller
    from minikd.train import train

    path, teacher, task = load_setting(teacher_dir, train_config.seed, task_name, data, train_tokens)
    config = replace(config, teacher_bias=resolve_bias(config.teacher_bias, task.tokenizer))
    validate.check_choice("completions", completions, (None, "greedy", "sampled"))
    student = new_student(student_preset, task, teacher, train_config.seed)
    distiller, extra = Distiller(teacher, config, train_config.steps, seed=train_config.seed), None
    if hidden_weight or layer_map:
        distiller = HiddenDistiller(teacher, student, config, train_config.steps, mu=hidden_weight,
                                    layer_map=layer_map, seed=train_config.seed)
        extra = distiller.projections
    loss_fn = distiller
    if on_policy:
        loss_fn = sequence.OnPolicyDistiller(teacher, task, on_policy, distiller, T=config.T, seed=train_config.seed)
    train_task = task
    if completions:
        train_task = sequence.teacher_completions(teacher, task, temperature=0.0 if completions == "greedy" else 1.0,
                                                  seed=train_config.seed)
    out_fn(f"distilling {path} ({teacher.num_params():,} parameters) into a '{student_preset}' student "
           f"({student.num_params():,}) on {task.name}: {config.divergence}, lam {config.lam} ({config.lam_schedule}), "
           f"T {config.T} ({config.T_schedule})"
           + (f"; trained on the teacher's {completions} completions" if completions else "")
           + (f"; on-policy with p={on_policy}" if on_policy else "")
           + (f"; hidden states {distiller.pairs} with mu={hidden_weight}" if extra is not None else ""))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "distill_config.json"), "w") as f:
        json.dump({**config.to_dict(), "completions": completions, "on_policy": on_policy,
                   "hidden_weight": hidden_weight, "layer_map": getattr(distiller, "pairs", None)}, f, indent=2)
    with open(os.path.join(out, "schedule.jsonl"), "w") as f:  # the schedule of every step
        f.writelines(json.dumps({"step": t, **distiller.describe(t)}) + "\n" for t in range(train_config.steps))
    history = train(student, train_task, train_config, out=out, loss_fn=loss_fn, progress=progress, teacher=teacher,
                    describe=distiller.describe, extra=extra)
    out_fn(f"student: {_summary(history[-1])}")
    return student, history


def _summary(final):
    """One line of a student's final evaluation: CE, distance to the teacher, and task measures."""
    return (f"validation CE {final['val_loss']:.4f}, KL to the teacher {final['kl_to_teacher']:.4f}, "
            f"top-1 agreement {final['agreement']:.1%}"
            + (f", KL to the truth {final['kl_to_true']:.4f}" if "kl_to_true" in final else "")
            + (f", exact match {final['accuracy']:.1%}" if "accuracy" in final else ""))


def sweep(teacher_dir, lams, temperatures, base, train_config, out, student_preset="small", train_tokens=None,
          progress=True, out_fn=print):
    """``minikd sweep``: one student per (λ, T) on the same data, steps and seed; writes ``out/results.csv``.

    ``base`` (a DistillConfig) gives every other setting. Returns the rows written.
    """
    from minikd.train import train

    _, teacher, task = load_setting(teacher_dir, train_config.seed, train_tokens=train_tokens)
    base = replace(base, teacher_bias=resolve_bias(base.teacher_bias, task.tokenizer))
    check_bias(base.teacher_bias, teacher.config.vocab_size)
    grid = [replace(base, lam=lam, T=T) for lam in lams for T in temperatures]  # all checked before training
    new_student(student_preset, task, teacher, train_config.seed)
    os.makedirs(out, exist_ok=True)
    rows = []
    for config in grid:
        student = new_student(student_preset, task, teacher, train_config.seed)
        final = train(student, task, train_config, loss_fn=Distiller(teacher, config, train_config.steps,
                                                                      seed=train_config.seed),
                      progress=progress, teacher=teacher)[-1]
        rows.append({"lam": config.lam, "T": config.T, "divergence": config.divergence, "form": config.form,
                     "steps": train_config.steps, "seed": train_config.seed,
                     **{k: v for k, v in final.items() if k not in ("step", "lr", "elapsed_s")}})
        out_fn(f"lam={config.lam:<5g} T={config.T:<5g} {_summary(final)}")
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out_fn(f"wrote {os.path.join(out, 'results.csv')} ({len(rows)} runs)")
    return rows
