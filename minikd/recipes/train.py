"""The training loop (cross-entropy by default: how a teacher is made), evaluation and metrics.

Every ``eval_every`` steps: validation loss, perplexity, task accuracy (addition), KL to the true
distribution (grammar); one JSON line per evaluation in ``metrics.jsonl`` and a checkpoint. The
batch of step t depends only on (seed, t), so a resumed run repeats an uninterrupted one exactly.
"""

import json
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from minikd.engine import backend, validate
from minikd.recipes import checkpoint, run_folder, sizes
from minikd.nn import optim, schedules
from minikd.losses import functional as F
from minikd.engine.autograd import no_grad
from minikd.tasks.data import IGNORE_INDEX, TASKS, load_task
from minikd.nn.model import PRESETS, ModelConfig, TransformerLM, preset


OPTIMIZERS = ("adamw", "sgd")  # TrainConfig.make_optimizer builds these


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3  # peak learning rate, after a linear warm-up; cosine decay to lr / 10
    warmup: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # on the global gradient norm; 0 turns clipping off
    optimizer: str = "adamw"  # or "sgd" (momentum 0.9)
    eval_every: int = 100
    eval_windows: int = 256  # fixed validation windows (or problems) per evaluation
    seed: int = 0  # batches; the model's own seed sets its initial weights

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_windows"):
            object.__setattr__(self, name, validate.check_positive_int(name, getattr(self, name)))  # NumPy ints too
        for name, value in (("warmup", self.warmup), ("seed", self.seed)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name, zero_allowed in (("lr", False), ("weight_decay", True), ("grad_clip", True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or value < 0 or (value == 0 and not zero_allowed):
                raise ValueError(f"{name} must be a finite number {'>= 0' if zero_allowed else '> 0'}, "
                                 f"got {name}={value!r}")
            object.__setattr__(self, name, float(value))
        validate.check_choice("optimizer", self.optimizer, OPTIMIZERS)

    def lr_schedule(self):
        return schedules.WarmupCosine(self.lr, min(self.warmup, self.steps - 1), self.steps, end=self.lr / 10)

    def make_optimizer(self, *modules):
        """The optimizer over the parameters of every module given (the model, and any extra module)."""
        params = [p for module in modules for p in module.parameters()]
        if self.optimizer == "sgd":
            return optim.SGD(params, self.lr, momentum=0.9)
        return optim.AdamW(params, self.lr, betas=(0.9, 0.95), weight_decay=self.weight_decay)


def cross_entropy_loss(model, x, y, step):
    """The language-modelling objective: mean −log q(y | x) over scored positions."""
    return F.cross_entropy(model(x), y, ignore_index=IGNORE_INDEX)


def evaluate(model, task, n_windows=256, split="val", batch_size=64, teacher=None):
    """Loss and perplexity on fixed windows; accuracy (addition) and KL to the truth (grammar).

    With a ``teacher``: ``kl_to_teacher`` = mean KL(teacher ‖ model) at T = 1 and ``agreement`` =
    the fraction of scored positions where both put their highest probability on the same token.

    ``kl_to_true`` = mean over positions of KL(P_true ‖ q_model) and ``entropy_floor`` = mean
    H(P_true), both exact for these windows. The expected loss is floor + KL, so no model beats the
    floor on average; the loss on one finite sample of targets scatters around that by sampling noise.
    """
    xp = backend.xp()
    x_all, y_all = task.eval_set(split, n_windows)
    was_training = model.training
    model.eval()
    total, count, kl, floor, kl_teacher, agree = 0.0, 0, 0.0, 0.0, 0.0, 0.0
    try:
        with no_grad():
            for start in range(0, x_all.shape[0], batch_size):
                rows = slice(start, min(start + batch_size, x_all.shape[0]))  # the standard has no slicing past the end
                x, y = x_all[rows, ...], y_all[rows, ...]
                logits = model(x)
                scored = y != IGNORE_INDEX
                n = int(xp.sum(xp.astype(scored, xp.int64)))
                total += F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX).item() * n
                count += n
                if teacher is not None:
                    v = teacher(x).data
                    kl_teacher += F.kl_div(logits, v, mask=scored).item() * n
                    agree += float(xp.sum(xp.astype(scored & (xp.argmax(v, axis=-1) == xp.argmax(logits.data, axis=-1)), xp.int64)))
                if hasattr(task, "true_probs"):
                    p = xp.astype(backend.from_numpy(task.true_probs(x)), logits.dtype)  # (B, S, V)
                    log_q = F.log_softmax(logits).data
                    log_p = xp.log(xp.where(p > 0, p, 1.0))
                    kl += float(xp.sum(p * (log_p - log_q)))
                    floor += float(-xp.sum(p * log_p))
        metrics = {"val_loss": total / count, "val_ppl": math.exp(min(total / count, 700.0))}
        if hasattr(task, "true_probs"):
            metrics.update(kl_to_true=kl / count, entropy_floor=floor / count)
        if teacher is not None:
            metrics.update(kl_to_teacher=kl_teacher / count, agreement=agree / count)
        if task.has_accuracy:
            metrics["accuracy"] = task.accuracy(model, split, n=n_windows)
    finally:
        model.train(was_training)
    return metrics


def unigram_loss(task, n_windows=2048):
    """Cross-entropy on validation targets of the best context-free model: training-target frequencies."""
    xp = backend.host_xp()  # a baseline, counted on the host
    y_train = backend.to_numpy(task.eval_set("train", n_windows)[1])
    y_val = backend.to_numpy(task.eval_set("val", n_windows)[1])
    counts = xp.bincount(y_train[y_train != IGNORE_INDEX], minlength=task.tokenizer.vocab_size) + 1.0
    log_q = xp.log(counts / counts.sum())  # add-one smoothing keeps unseen tokens finite
    return float(-log_q[y_val[y_val != IGNORE_INDEX]].mean())


def read_metrics(out, last_step=None):
    """The evaluation records in ``out/metrics.jsonl`` (up to ``last_step``); a line cut short by a
    killed run is skipped."""
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if last_step is None or record["step"] <= last_step:
                records.append(record)
    return records


def _write_metrics(out, records):
    path = os.path.join(out, "metrics.jsonl")
    with open(f"{path}.tmp", "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    os.replace(f"{path}.tmp", path)


def _resume(out, model, optimizer, extra, config):
    """Load ``out/checkpoint.npz`` into model, optimizer (and extra) after checking that it belongs to
    this model and these settings (each differing field named); cut ``metrics.jsonl`` back to its
    step. Returns (step, the records up to it)."""
    path = os.path.join(out, "checkpoint.npz")
    ckpt = checkpoint.load(path)
    changed = run_folder.differences(asdict(ckpt.config), asdict(model.config))
    if changed:
        raise ValueError(f"cannot resume from {path!r}: it holds a different model ({'; '.join(changed)})")
    changed = run_folder.differences(ckpt.meta["train_config"], asdict(config)) if "train_config" in ckpt.meta else []
    if changed:
        raise ValueError(f"cannot resume from {path!r}: it was trained with other settings ({'; '.join(changed)})")
    model.load_state_dict(ckpt.model_state)
    if extra is not None:
        extra.load_state_dict(ckpt.extra_state)
    try:
        optimizer.load_state_dict(ckpt.optimizer_state)
    except KeyError as err:
        raise checkpoint.CheckpointError(f"checkpoint {path!r}: the optimizer state lacks {err}") from None
    records = read_metrics(out, ckpt.step)
    _write_metrics(out, records)
    return ckpt.step, records


def check_training_memory(model_config, batch_size):
    """A ValueError naming ``batch_size`` when one training step would not fit in memory."""
    sizes.check_memory(f"batch_size={batch_size} for this model", sizes.training_bytes(model_config, batch_size))


def _diverged(model, params, x):
    """Whether the weights, or the logits they give on ``x``, are no longer finite (the updates blew up)."""
    xp = backend.xp()
    if not all(bool(xp.all(xp.isfinite(p.data))) for p in params):
        return True
    with no_grad():
        return not bool(xp.all(xp.isfinite(model(x).data)))


def train(model, task, config, out=None, loss_fn=cross_entropy_loss, resume=False, progress=True, log=None,
          teacher=None, describe=None, extra=None):
    """Train ``model`` on ``task`` for ``config.steps`` steps; returns the list of evaluation records.

    ``loss_fn(model, x, y, step)`` returns the scalar loss Tensor (cross-entropy by default; the
    distillation workflows pass their own). With ``out``, metrics go to ``out/metrics.jsonl`` and a
    checkpoint to ``out/checkpoint.npz`` at each evaluation; ``resume=True`` continues from it.
    ``log(step, record)`` is called after each evaluation. With ``teacher``, evaluations also
    measure the student against it; ``describe(step)`` adds entries (e.g. λ and T) to each record.
    ``extra`` (a Module, e.g. the projections of hidden-state distillation) is trained beside the
    model and saved in the checkpoint with it. A resumed run returns its whole history (the records
    read back from ``metrics.jsonl``, then the new ones); resuming a finished run only loads it.
    """
    check_training_memory(model.config, config.batch_size)
    optimizer = config.make_optimizer(model, *([extra] if extra is not None else []))
    lr_at = config.lr_schedule()
    step, resumed_at, history = 0, None, []
    if out is not None:
        checkpoint.remove_temporary(os.path.join(out, "checkpoint.npz"))  # left by a killed run
    if resume:
        if out is None or not os.path.exists(os.path.join(out, "checkpoint.npz")):
            raise ValueError(f"resume=True needs a checkpoint in out={out!r}")
        step, history = _resume(out, model, optimizer, extra, config)  # its evaluation is already recorded
        resumed_at = step
    elif out is not None:
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "metrics.jsonl"), "w").close()
    model_was_training = model.training
    model.train()
    xp = backend.xp()
    running, running_steps, start_time = xp.zeros((), device=backend.device()), 0, time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc=f"train {task.name}", unit="step")
    try:
        while True:
            if (step % config.eval_every == 0 or step == config.steps) and step != resumed_at:
                record = {"step": step, "lr": lr_at(max(step - 1, 0)),
                          "train_loss": float(running) / running_steps if running_steps else None,
                          **(describe(step) if describe is not None else {}),
                          **evaluate(model, task, config.eval_windows, teacher=teacher),
                          "elapsed_s": time.perf_counter() - start_time}
                running, running_steps = xp.zeros((), device=backend.device()), 0
                history.append(record)
                if out is not None:
                    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if step > 0:
                        checkpoint.save(os.path.join(out, "checkpoint.npz"), model, optimizer, step, extra=extra,
                                        train_config=asdict(config), task=task.name,
                                        symbols=list(task.tokenizer.symbols))
                bar.set_postfix(val_loss=f"{record['val_loss']:.4f}")
                if log is not None:
                    log(step, record)
            if step >= config.steps:
                break
            x, y = task.batch("train", config.batch_size, config.seed, step)
            optimizer.zero_grad()
            try:
                loss = loss_fn(model, x, y, step)
            except ValueError as err:  # after updates, non-finite weights or logits: the learning rate
                if step != (resumed_at or 0) and _diverged(model, optimizer.params, x):
                    raise ValueError(f"training diverged: by step {step} the model's weights or logits are no "
                                     f"longer finite ({err}); lr={config.lr} is too large for this run, choose "
                                     f"a smaller --lr") from None
                raise
            loss.backward()
            if config.grad_clip:
                optim.clip_grad_norm(optimizer.params, config.grad_clip)
            optimizer.lr = lr_at(step)
            optimizer.step()
            running = running + loss.data  # summed on the device; read at the next evaluation
            running_steps += 1
            step += 1
            bar.update(1)
    finally:
        bar.close()
        model.train(model_was_training)
    return history


def run(task_name, preset_name, config, out, data=None, dropout=0.0, resume=False, overwrite=False, progress=True,
        out_fn=print):
    """``minikd train``: build the task and a preset model, train it in the run folder ``out``, print
    the final numbers.

    ``out`` belongs to this run (``run_folder.claim``): ``resume`` continues it, ``overwrite``
    replaces a previous one. Returns (model, history, summary); the summary (also in
    ``out/summary.json``) sets the final validation loss beside the unigram baseline and, on the
    grammar, the entropy floor.
    """
    if data is not None and task_name != "text":
        raise ValueError(f"--data is read only with --task text, got --task {task_name}")
    preset(preset_name, 1, 1, dropout=dropout)  # checks the preset and the dropout before any work
    task = load_task(task_name, seed=config.seed, data=data)
    check_training_memory(preset(preset_name, task.tokenizer.vocab_size, task.block_size), config.batch_size)
    settings = {"task": task_name, "data": None if data is None else run_folder.file_identity(data),
                "preset": preset_name, "dropout": dropout, "train_config": asdict(config)}
    with run_folder.claim(out, "train", settings, resume=resume, overwrite=overwrite):
        model = TransformerLM(preset(preset_name, task.tokenizer.vocab_size, task.block_size, dropout=dropout),
                              seed=config.seed)
        out_fn(f"task {task.name}: vocabulary {task.tokenizer.vocab_size}, block {task.block_size}; "
               f"model '{preset_name}': {model.num_params():,} parameters; backend {backend.name()}")
        history = train(model, task, config, out=out, resume=resume and checkpoint_exists(out), progress=progress)
        final = history[-1]
        summary = {"task": task.name, "preset": preset_name, "params": model.num_params(), "steps": config.steps,
                   "unigram_loss": unigram_loss(task), **{k: v for k, v in final.items() if k != "step"}}
        out_fn(f"validation loss {final['val_loss']:.4f} nats/token (perplexity {final['val_ppl']:.2f}); "
               f"unigram baseline {summary['unigram_loss']:.4f}")
        if "entropy_floor" in final:
            out_fn(f"entropy floor {final['entropy_floor']:.4f}: the model is {final['kl_to_true']:.4f} nats/token "
                   f"(KL to the true distribution) above it")
        if "accuracy" in final:
            out_fn(f"exact-match accuracy {final['accuracy']:.1%} on {config.eval_windows} validation problems")
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    out_fn(f"wrote {os.path.join(out, 'checkpoint.npz')}, metrics.jsonl, summary.json")
    return model, history, summary


def checkpoint_exists(out):
    """Whether the run folder ``out`` holds a checkpoint to resume from (a run killed before its first
    checkpoint starts again from step 0)."""
    return os.path.isfile(os.path.join(out, "checkpoint.npz"))


def add_training_arguments(parser, defaults=TrainConfig(), lr=True):
    """The TrainConfig flags shared by ``train`` and ``distill``, with TrainConfig's defaults."""
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="windows (rows) per step")
    if lr:
        parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (warm-up, then cosine)")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps between evaluations")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="initial weights and batches")


def add_commands(commands):
    """``minikd train``."""
    parser = commands.add_parser("train", help="train a model with cross-entropy (this is how a teacher is made)")
    parser.add_argument("--task", choices=TASKS, default="grammar", help="a built-in task, or 'text' with --data")
    parser.add_argument("--data", metavar="FILE", help="a UTF-8 text file (task 'text' only)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="teacher", help="model size")
    add_training_arguments(parser)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=TrainConfig.optimizer, help="AdamW or SGD with momentum")
    parser.add_argument("--dropout", type=float, default=ModelConfig.dropout, help="dropout probability")
    parser.add_argument("--out", default="runs/train", help="folder for metrics.jsonl and checkpoint.npz")
    add_run_folder_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_command)


def add_run_folder_arguments(parser):
    """``--resume`` and ``--overwrite``: what to do with a run folder that already holds a run."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in OUT (the same settings, checked)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in OUT (its files are deleted)")


def _command(args):
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         eval_every=args.eval_every, seed=args.seed)
    run(args.task, args.preset, config, args.out, data=args.data, dropout=args.dropout, resume=args.resume,
        overwrite=args.overwrite, progress=not args.quiet)
    return 0
