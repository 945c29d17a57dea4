"""What the tutorials share: the fast mode, where figures and runs go, and a cached grammar teacher.

``MINIKD_FAST=1`` shrinks every size (the test suite runs each tutorial so); ``MINIKD_FIGURES``
(default ``figures``) and ``MINIKD_RUNS`` (default ``runs/tutorials``) are the output folders.
"""

import os

from minikd import checkpoint, data, plots
from minikd.model import TransformerLM, preset
from minikd.train import TrainConfig, train

FAST = os.environ.get("MINIKD_FAST") == "1"


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


def grammar_teacher(steps, tokens=200_000, seed=0):
    """A ``teacher``-preset model trained with cross-entropy on the grammar task (block 32).

    Trained once and kept under ``runs_dir()``; a later call with the same settings loads it.
    Training is deterministic, so a loaded teacher is the one training would give.
    """
    task = data.GrammarTask(train_tokens=tokens, seed=seed)
    path = runs_dir(f"grammar-teacher-{steps}-{tokens}-{seed}", "checkpoint.npz")
    if os.path.exists(path):
        return checkpoint.load_model(path)
    model = TransformerLM(preset("teacher", task.tokenizer.vocab_size, task.block_size), seed=seed)
    train(model, task, TrainConfig(steps=steps, eval_every=steps, eval_windows=64, seed=seed),
          out=os.path.dirname(path), progress=False)
    return model.eval()
