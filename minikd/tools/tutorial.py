"""What the tutorials share: their three sizes, seeds and mean ± spread, where figures and runs go,
and a cached grammar teacher.

Three sizes: full (the default), ``MINIKD_CHECK=1`` (what the test suite runs: the runs whose
numbers the prose quotes, at the same size, over the same seeds, with the assertions on; only the
extra points of a figure are left out) and ``MINIKD_FAST=1`` (every size shrunk: only that the code
runs, no science assertions). ``MINIKD_FIGURES``
(default ``figures``) and ``MINIKD_RUNS`` (default ``runs/tutorials``) are the output folders.

A tutorial runs like the ``minikd`` command: importing this helper puts BLAS on one thread beside
minikd's own worker pool (``backend.limit_blas_threads``), so the tutorials need no tuning of their own.
"""

import json
import math
import os
import sys

import filelock

from minikd.engine import backend
from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd.tools import plots
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, train



backend.limit_blas_threads()  # as the minikd command does: see the module docstring

def _switch(name, meaning):
    """``$name``: ``1`` on, ``0`` or unset off; any other value is an error, never a silent "no"."""
    value = os.environ.get(name, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{name} must be 1 ({meaning}) or 0 (full size), got {value!r}")
    return value == "1"


FAST = _switch("MINIKD_FAST", "fast")
CHECK = not FAST and _switch("MINIKD_CHECK", "check")
CLAIMS = not FAST  # the science assertions run at full size and in check mode


def pick(full, fast, check=None):
    """``full`` normally, ``fast`` under ``MINIKD_FAST=1``, ``check`` (default ``full``) under ``MINIKD_CHECK=1``."""
    if FAST:
        return fast
    return check if CHECK and check is not None else full


def mean_spread(values):
    """(mean, spread) of a list of per-seed results; the spread is the sample standard deviation
    (0 for a single value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def describe(values, fmt="{:.4f}"):
    """``"mean ± spread (v1, v2, v3)"`` for per-seed results."""
    mean, spread = mean_spread(values)
    return f"{fmt.format(mean)} ± {fmt.format(spread)} ({', '.join(fmt.format(float(v)) for v in values)})"


def clearly_below(low, high):
    """Whether the mean of ``low`` is below the mean of ``high`` by more than the two spreads together:
    the test the tutorials use for "one method beats another" over seeds."""
    (mean_low, spread_low), (mean_high, spread_high) = mean_spread(low), mean_spread(high)
    return mean_high - mean_low > spread_low + spread_high


def mean_sd_plot(x, runs, title, xlabel, ylabel, **options):
    """``plots.line_plot`` of per-seed results: ``runs`` = {label: one list of per-seed values per x};
    each line is the mean over the seeds, its error bars one spread (``mean_spread``)."""
    stats = {label: [mean_spread(values) for values in per_x] for label, per_x in runs.items()}
    return plots.line_plot(x, {label: [m for m, _ in s] for label, s in stats.items()}, title, xlabel, ylabel,
                           errors={label: [sd for _, sd in s] for label, s in stats.items()}, **options)


def in_kernel():
    """Whether this runs inside a Jupyter kernel (a notebook), not as a script."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def runs_dir(*parts):
    return os.path.join(os.environ.get("MINIKD_RUNS", os.path.join("runs", "tutorials")), *parts)


def save_figure(fig, name):
    """Save ``fig`` as ``$MINIKD_FIGURES/name`` (a PNG) and return the path; in a notebook, also show
    the saved PNG inline under the cell."""
    path = os.path.join(os.environ.get("MINIKD_FIGURES", "figures"), name)
    plots.save(fig, path)
    if in_kernel():
        from IPython.display import Image, display  # only inside a kernel, where IPython is loaded

        display(Image(filename=path))
    return path


def teacher_folder(steps, tokens, seed=0):
    """Where ``grammar_teacher`` keeps its run (``checkpoint.npz``, ``metrics.jsonl``)."""
    return runs_dir(f"grammar-teacher-{steps}-{tokens}-{seed}")


def trained_model(task, preset_name, steps, folder, seed=0):
    """(model, history): a ``preset_name`` model trained with cross-entropy on ``task`` for ``steps``
    steps, and its evaluation records (ten over the run).

    Trained once and kept in ``folder``; a later call with the same folder loads it, and a call from a
    second process while the first trains waits for it (a lock beside the folder). Training is
    deterministic, so a loaded model is the one training would give.
    """
    path = os.path.join(folder, "checkpoint.npz")
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    with filelock.FileLock(os.path.abspath(folder) + ".lock"):
        started = os.path.exists(path)
        if not started or checkpoint.load(path).step < steps:  # a killed training is continued, not taken as done
            model = TransformerLM(preset(preset_name, task.tokenizer.vocab_size, task.block_size), seed=seed)
            train(model, task, TrainConfig(steps=steps, eval_every=max(1, steps // 10), eval_windows=128, seed=seed),
                  out=folder, progress=False, resume=started)
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    return checkpoint.load_model(path), history


TEACHER_STEPS = pick(400, 20)  # the grammar teacher of tutorials 4 to 8 (the same in check mode)
TEACHER_TOKENS = pick(200_000, 5_000)


def grammar_teacher(steps=TEACHER_STEPS, tokens=TEACHER_TOKENS, seed=0):
    """``trained_model`` for the tutorials' grammar teacher: the ``teacher`` preset, block 32."""
    task = data.GrammarTask(train_tokens=tokens, seed=seed)
    return trained_model(task, "teacher", steps, teacher_folder(steps, tokens, seed), seed)
