"""What the tutorials share: the fast mode, where figures and runs go, and a cached grammar teacher.

``MINIKD_FAST=1`` shrinks every size (the test suite runs each tutorial so); ``MINIKD_FIGURES``
(default ``figures``) and ``MINIKD_RUNS`` (default ``runs/tutorials``) are the output folders.
"""

import json
import os

from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd.tools import plots
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, train



def _fast_mode():
    """``MINIKD_FAST``: ``1`` fast, ``0`` or unset full; any other value is an error, never a silent "no"."""
    value = os.environ.get("MINIKD_FAST", "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"MINIKD_FAST must be 1 (fast) or 0 (full), got {value!r}")
    return value == "1"


FAST = _fast_mode()


def pick(full, fast):
    """``full`` normally, ``fast`` under ``MINIKD_FAST=1``."""
    return fast if FAST else full


def runs_dir(*parts):
    return os.path.join(os.environ.get("MINIKD_RUNS", os.path.join("runs", "tutorials")), *parts)


def save_figure(fig, name):
    """Save ``fig`` as ``$MINIKD_FIGURES/name`` (a PNG) and return the path."""
    path = os.path.join(os.environ.get("MINIKD_FIGURES", "figures"), name)
    plots.save(fig, path)
    return path


def teacher_folder(steps, tokens=200_000, seed=0):
    """Where ``grammar_teacher`` keeps its run (``checkpoint.npz``, ``metrics.jsonl``)."""
    return runs_dir(f"grammar-teacher-{steps}-{tokens}-{seed}")


def trained_model(task, preset_name, steps, folder, seed=0):
    """(model, history): a ``preset_name`` model trained with cross-entropy on ``task`` for ``steps``
    steps, and its evaluation records (ten over the run).

    Trained once and kept in ``folder``; a later call with the same folder loads it. Training is
    deterministic, so a loaded model is the one training would give.
    """
    path = os.path.join(folder, "checkpoint.npz")
    started = os.path.exists(path)
    if not started or checkpoint.load(path).step < steps:  # a killed training is continued, not taken as done
        model = TransformerLM(preset(preset_name, task.tokenizer.vocab_size, task.block_size), seed=seed)
        train(model, task, TrainConfig(steps=steps, eval_every=max(1, steps // 10), eval_windows=128, seed=seed),
              out=folder, progress=False, resume=started)
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    return checkpoint.load_model(path), history


def grammar_teacher(steps, tokens=200_000, seed=0):
    """``trained_model`` for the tutorials' grammar teacher: the ``teacher`` preset, block 32."""
    task = data.GrammarTask(train_tokens=tokens, seed=seed)
    return trained_model(task, "teacher", steps, teacher_folder(steps, tokens, seed), seed)
