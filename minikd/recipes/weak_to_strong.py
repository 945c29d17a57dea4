"""Weak-to-strong generalization (Burns et al., 2023) on the addition task.

A small, weak teacher (trained briefly on ground truth) labels most of the training prompts with its
own completions and soft labels; a small verified set keeps its true answers. A larger student
learns from both with the combined objective, per step

    L = (1 − λ)·CE(student, verified answers) + λ·[(1 − α_t)·T²·KL(weak_T ‖ student_T) + α_t·CE(student, argmax student)]

on the weak-labelled rows, where the last term is the auxiliary confidence loss (the student's own
hardened predictions as targets, α_t warmed up linearly from 0 to α_max). The performance gap
recovered, PGR = (student − weak)/(ceiling − weak), compares it with the weak teacher and with the
ceiling: the same large model trained on all the ground truth with the same budget.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace

from minikd.engine import backend, validate
from minikd.nn import schedules
from minikd.recipes import sequence
from minikd.losses import functional as F
from minikd.tasks.data import IGNORE_INDEX, AdditionTask
from minikd.recipes.teacher import teacher_logits
from minikd.nn.model import PRESETS, TransformerLM, preset
from minikd.recipes import run_folder
from minikd.recipes.train import TrainConfig, add_run_folder_arguments, checkpoint_exists, train

VERIFIED_STREAM = 4_000_037  # the verified rows of each step: a stream apart from the batches'


def pgr(weak, student, ceiling):
    """Performance gap recovered: (student − weak)/(ceiling − weak); 0 = no better than the weak
    teacher, 1 = as good as the ceiling. Undefined (ValueError) when ceiling equals weak."""
    for name, value in (("weak", weak), ("student", student), ("ceiling", ceiling)):
        if not math.isfinite(value):
            raise ValueError(f"pgr: {name} must be a finite number, got {value!r}")
    if ceiling == weak:
        raise ValueError(f"pgr is undefined: the ceiling ({ceiling}) equals the weak teacher's performance")
    return (student - weak) / (ceiling - weak)


@dataclass(frozen=True)
class WeakToStrongConfig:
    weak_preset: str = "small"
    weak_steps: int = 700  # a short training: the weak teacher is right on some problems, not all
    strong_preset: str = "teacher"
    steps: int = 1500  # the student's and the ceiling's budget (same steps, same rows per step)
    n_verified: int = 500  # training problems whose true answers the student sees
    verified_batch: int = 8  # of each step's rows, this many are verified, the rest weak-labelled
    lam: float = 0.5  # weight of the weak teacher's labels
    T: float = 1.0
    alpha_max: float = 0.5  # the confidence loss's final weight (used in the "with confidence" run)
    alpha_warmup: float = 0.2  # fraction of the steps over which α rises from 0 to alpha_max

    def __post_init__(self):
        for name in ("weak_preset", "strong_preset"):
            validate.check_choice(name, getattr(self, name), tuple(PRESETS))
        for name in ("weak_steps", "steps", "n_verified", "verified_batch"):
            object.__setattr__(self, name, validate.check_positive_int(name, getattr(self, name)))
        object.__setattr__(self, "lam", validate.check_lam(self.lam, "interpolate"))
        object.__setattr__(self, "T", validate.check_temperature(self.T))
        for name in ("alpha_max", "alpha_warmup"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


class WeakToStrongLoss:
    """The ``train`` loss function: the rows from ``train`` are weak-labelled; each step adds
    ``verified_batch`` verified rows and one forward pass covers both."""

    def __init__(self, weak, verified, config, steps, alpha_max, seed=0):
        self.weak, self.verified, self.config, self.seed = weak.eval(), verified, config, seed
        self.alpha_at = schedules.Linear(0.0, alpha_max, max(1, round(config.alpha_warmup * steps)))

    def _verified_rows(self, step):
        examples = self.verified.examples["train"]
        picks = backend.host_rng(self.seed, VERIFIED_STREAM, step).integers(0, len(examples), self.config.verified_batch)
        return self.verified.pairs(examples[picks])

    def __call__(self, student, x_weak, y_weak, step):
        xp, c = backend.xp(), self.config
        x_true, y_true = self._verified_rows(step)
        x = xp.concat([x_weak, x_true])  # (B_w + B_v, S): one forward pass for both
        ignored_weak = xp.full(y_weak.shape, IGNORE_INDEX, dtype=y_weak.dtype, device=backend.device())
        weak_rows = xp.concat([y_weak != IGNORE_INDEX, xp.zeros(y_true.shape, dtype=xp.bool, device=backend.device())])  # (B, S)
        z = student(x)  # (B, S, V)
        ground_truth = F.cross_entropy(z, xp.concat([ignored_weak, y_true]), ignore_index=IGNORE_INDEX)
        imitation = F.kl_div(z, teacher_logits(self.weak, x), T=c.T, mask=weak_rows) * (c.T * c.T)
        alpha = self.alpha_at(step)
        if alpha > 0:  # the student's own hardened predictions as targets (no gradient through argmax)
            hardened = xp.where(weak_rows, xp.argmax(z.data, axis=-1), IGNORE_INDEX)
            confidence = F.cross_entropy(z, hardened, ignore_index=IGNORE_INDEX)
            imitation = (1.0 - alpha) * imitation + alpha * confidence
        return (1.0 - c.lam) * ground_truth + c.lam * imitation

    def describe(self, step):
        return {"alpha": self.alpha_at(step)}


class Experiment:
    """The trainings of a weak-to-strong run, one method each, sharing task, seed and budget.

    ``weak()`` trains the weak teacher and lets it label the prompts outside the verified set;
    ``ceiling()`` trains the strong model on all the ground truth; ``student(name, lam, alpha_max)``
    trains the strong model on verified + weak labels. Each records its final evaluation in
    ``results[name]`` and its time in ``timings[name]``; with ``out``, each run gets a folder there.
    ``evaluations`` is how many times each run is evaluated (besides step 0).
    """

    def __init__(self, config, task=None, seed=0, batch_size=32, out=None, progress=True, evaluations=5):
        self.task = task or AdditionTask(seed=seed)
        n_train = len(self.task.examples["train"])
        if not config.verified_batch < batch_size:
            raise ValueError(f"verified_batch ({config.verified_batch}) must be smaller than batch_size ({batch_size})")
        if not config.n_verified < n_train:
            raise ValueError(f"n_verified ({config.n_verified}) must be smaller than the {n_train} training problems")
        self.config, self.seed, self.batch_size, self.out, self.progress = config, seed, batch_size, out, progress
        self.evaluations, self.resume = evaluations, False  # resume: continue each run found in out
        self.results, self.timings = {}, {}
        self.weak_model = self.verified = self.weak_labelled = self.weak_label_accuracy = None

    def _train(self, name, preset_name, steps, on_task, rows, **kwargs):
        start = time.perf_counter()
        task = self.task
        model = TransformerLM(preset(preset_name, task.tokenizer.vocab_size, task.block_size), seed=self.seed)
        n_val = len(task.examples["val"])
        train_config = TrainConfig(steps=steps, batch_size=rows, eval_every=max(1, steps // self.evaluations),
                                   eval_windows=n_val,
                                   seed=self.seed)
        out = None if self.out is None else os.path.join(self.out, name)
        resume = self.resume and out is not None and checkpoint_exists(out)
        self.results[name] = train(model, on_task, train_config, out=out, progress=self.progress, resume=resume,
                                   **kwargs)[-1]
        self.timings[name] = time.perf_counter() - start
        return model

    def weak(self):
        """Train the weak teacher; it completes every training prompt outside the verified set."""
        c, examples = self.config, self.task.examples["train"]
        self.weak_model = self._train("weak", c.weak_preset, c.weak_steps, self.task, self.batch_size).eval()
        self.verified = self.task.with_train_examples(examples[: c.n_verified])
        unlabelled = self.task.with_train_examples(examples[c.n_verified:])
        self.weak_labelled = sequence.teacher_completions(self.weak_model, unlabelled)
        right = (self.weak_labelled.examples["train"] == examples[c.n_verified:]).all(axis=1)
        self.weak_label_accuracy = float(right.mean())
        return self.weak_model

    def ceiling(self):
        return self._train("ceiling", self.config.strong_preset, self.config.steps, self.task, self.batch_size)

    def student(self, name="student", lam=None, alpha_max=0.0):
        """The strong model on verified and weak labels (``weak()`` first), at ``lam`` (default: the config's)."""
        if self.weak_model is None:
            raise ValueError("train the weak teacher first: call weak() before student()")
        config = self.config if lam is None else replace(self.config, lam=lam)
        loss = WeakToStrongLoss(self.weak_model, self.verified, config, config.steps, alpha_max, seed=self.seed)
        return self._train(name, config.strong_preset, config.steps, self.weak_labelled,
                           self.batch_size - config.verified_batch, loss_fn=loss, describe=loss.describe,
                           teacher=self.weak_model)

    def accuracy(self, name):
        return self.results[name]["accuracy"]

    def pgr(self, name):
        """PGR of run ``name`` on exact-match accuracy; None where undefined (ceiling = weak)."""
        weak, ceiling = self.accuracy("weak"), self.accuracy("ceiling")
        return None if ceiling == weak else pgr(weak, self.accuracy(name), ceiling)


def run(config=WeakToStrongConfig(), out="runs/weak_to_strong", seed=0, batch_size=TrainConfig.batch_size, task=None,
        resume=False, overwrite=False, progress=True, out_fn=print):
    """``minikd weak-to-strong``: weak teacher, ceiling, and the student without and with the confidence
    loss; prints the table, writes ``results.json``; returns the results. ``task`` defaults to
    ``AdditionTask(seed=seed)``; performance is exact-match accuracy on all its validation problems.
    Each run has its folder inside the run folder ``out``; ``resume`` continues the unfinished ones.
    """
    validate.check_positive_int("batch_size", batch_size)
    experiment = Experiment(config, task, seed, batch_size, out, progress)
    settings = {"config": asdict(config), "seed": seed, "batch_size": batch_size,
                "task": None if task is None else task.name}
    with run_folder.claim(out, "weak-to-strong", settings, resume=resume, overwrite=overwrite):
        experiment.resume = resume
        experiment.weak()
        experiment.ceiling()
        experiment.student("student")
        experiment.student("student_confidence", alpha_max=config.alpha_max)
        names = ("student", "student_confidence")
        report = {"settings": {**asdict(config), "seed": seed, "batch_size": batch_size,
                               "train_problems": len(experiment.task.examples["train"]),
                               "val_problems": len(experiment.task.examples["val"]), "backend": backend.name()},
                  "weak_label_accuracy": experiment.weak_label_accuracy,
                  "accuracy": {name: experiment.accuracy(name) for name in experiment.results},
                  "pgr": {name: experiment.pgr(name) for name in names},
                  "final": experiment.results, "timings": experiment.timings}
        _print_table(report, out_fn)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(report, f, indent=2)
    out_fn(f"wrote {os.path.join(out, 'results.json')}")
    return report


def _print_table(report, out_fn):
    settings, accuracy = report["settings"], report["accuracy"]
    gap = {name: "undefined" if value is None else f"{value:.3f}" for name, value in report["pgr"].items()}
    rows = [(f"weak teacher ('{settings['weak_preset']}', {settings['weak_steps']} steps)", accuracy["weak"],
             "0 by definition"),
            (f"student, weak labels + {settings['n_verified']} verified (λ={settings['lam']})", accuracy["student"],
             gap["student"]),
            (f"  + confidence loss (α_max={settings['alpha_max']})", accuracy["student_confidence"],
             gap["student_confidence"]),
            (f"ceiling ('{settings['strong_preset']}', all ground truth)", accuracy["ceiling"], "1 by definition")]
    out_fn(f"\nweak labels: {report['weak_label_accuracy']:.1%} of the weak-labelled training problems are right\n")
    out_fn(f"  {'model':<52s} {'exact match':>11s}  {'PGR':>15s}")
    for label, value, recovered in rows:
        out_fn(f"  {label:<52s} {value:>11.1%}  {recovered:>15s}")
    out_fn("\ntimes: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report["timings"].items()))


def add_commands(commands):
    """``minikd weak-to-strong``: every default is WeakToStrongConfig's."""
    parser = commands.add_parser("weak-to-strong", help="a weak teacher supervises a larger student (addition); PGR table")
    defaults = WeakToStrongConfig()
    presets = tuple(PRESETS)
    parser.add_argument("--weak-preset", choices=presets, default=defaults.weak_preset, help="the weak teacher's size")
    parser.add_argument("--weak-steps", type=int, default=defaults.weak_steps, help="the weak teacher's training")
    parser.add_argument("--strong-preset", choices=presets, default=defaults.strong_preset, help="the student's size")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="student's and ceiling's steps")
    parser.add_argument("--n-verified", type=int, default=defaults.n_verified, help="problems with true answers")
    parser.add_argument("--verified-batch", type=int, default=defaults.verified_batch,
                        help="verified rows in each step's batch")
    parser.add_argument("--lam", type=float, default=defaults.lam, help="weight of the weak teacher's labels")
    parser.add_argument("--T", type=float, default=defaults.T, help="temperature of the weak teacher's soft labels")
    parser.add_argument("--alpha-max", type=float, default=defaults.alpha_max, help="confidence loss weight")
    parser.add_argument("--alpha-warmup", type=float, default=defaults.alpha_warmup,
                        help="fraction of steps over which α rises to --alpha-max")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="rows per step")
    parser.add_argument("--seed", type=int, default=0, help="problems, initial weights and batches")
    parser.add_argument("--out", default="runs/weak_to_strong", help="folder for results.json and the runs")
    add_run_folder_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=_command)


def _command(args):
    config = WeakToStrongConfig(weak_preset=args.weak_preset, weak_steps=args.weak_steps,
                                strong_preset=args.strong_preset, steps=args.steps, n_verified=args.n_verified,
                                verified_batch=args.verified_batch, lam=args.lam, T=args.T,
                                alpha_max=args.alpha_max, alpha_warmup=args.alpha_warmup)
    run(config, args.out, seed=args.seed, batch_size=args.batch_size, resume=args.resume, overwrite=args.overwrite,
        progress=not args.quiet)
    return 0
