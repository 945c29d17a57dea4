"""Training, checkpoints and resuming: exact round trips, resume = uninterrupted, clear errors."""

import json
import os
import re

import numpy as np
import pytest
from reference import assert_same_params

from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd.tools.cli import main
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, cross_entropy_loss, evaluate, train


@pytest.fixture(scope="module")
def task():
    return data.GrammarTask(block_size=12, train_tokens=20_000, val_tokens=4_000, seed=0)


def tiny_model(task, seed=0, **overrides):
    return TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size, **overrides), seed=seed)


CONFIG = TrainConfig(steps=12, batch_size=8, eval_every=4, eval_windows=16, warmup=2, seed=5)


def losses(history):
    return [(r["step"], r["train_loss"], r["val_loss"], r["kl_to_true"]) for r in history]


def test_training_lowers_the_loss_and_same_seed_repeats_bit_for_bit(task):
    a = train(tiny_model(task), task, CONFIG, progress=False)
    b = train(tiny_model(task), task, CONFIG, progress=False)
    assert losses(a) == losses(b)
    assert a[-1]["val_loss"] < a[0]["val_loss"]
    assert a[0]["train_loss"] is None and a[-1]["entropy_floor"] > 0


def test_checkpoint_round_trip_is_exact(task, tmp_path):
    model = tiny_model(task, dropout=0.1)
    train(model, task, CONFIG, out=str(tmp_path), progress=False)
    ckpt = checkpoint.load(str(tmp_path / "checkpoint.npz"))
    assert ckpt.step == CONFIG.steps and ckpt.meta["task"] == "grammar"
    loaded = checkpoint.load_model(str(tmp_path / "checkpoint.npz"))
    assert loaded.config == model.config
    assert_same_params(model, loaded)
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []  # nothing left half-written


def test_resume_equals_uninterrupted(task, tmp_path):
    """Stop after step 6 (an error in the loss at step 7), resume: the same losses and weights, bit for bit."""
    whole = tiny_model(task, dropout=0.1)
    history = train(whole, task, CONFIG, out=str(tmp_path / "whole"), progress=False)

    def crash_at_7(model, x, y, step):
        if step == 7:
            raise KeyboardInterrupt
        return cross_entropy_loss(model, x, y, step)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(task, dropout=0.1), task, CONFIG, out=str(tmp_path / "split"), loss_fn=crash_at_7,
              progress=False)
    resumed = tiny_model(task, dropout=0.1)
    train(resumed, task, CONFIG, out=str(tmp_path / "split"), resume=True, progress=False)
    assert_same_params(whole, resumed)
    with open(tmp_path / "split" / "metrics.jsonl") as f:
        split_records = [json.loads(line) for line in f]
    assert losses(split_records) == losses(history)


def test_resume_needs_a_checkpoint(task, tmp_path):
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        train(tiny_model(task), task, CONFIG, out=str(tmp_path), resume=True, progress=False)


def test_resume_refuses_a_different_model(task, tmp_path):
    train(tiny_model(task), task, CONFIG, out=str(tmp_path), progress=False)
    other = TransformerLM(preset("small", task.tokenizer.vocab_size, task.block_size))
    with pytest.raises(ValueError, match="different model"):
        train(other, task, CONFIG, out=str(tmp_path), resume=True, progress=False)


def test_truncated_foreign_and_missing_checkpoints(task, tmp_path):
    model = tiny_model(task)
    path = str(tmp_path / "model.npz")
    checkpoint.save(path, model, step=3)
    raw = open(path, "rb").read()
    with open(tmp_path / "truncated.npz", "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cannot be read"):
        checkpoint.load(str(tmp_path / "truncated.npz"))
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a minikd checkpoint"):
        checkpoint.load(str(tmp_path / "foreign.npz"))
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.load(str(tmp_path / "nowhere.npz"))
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"format": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot be read"):  # object arrays need pickle, which is refused
        checkpoint.load(str(tmp_path / "pickled.npz"))


def test_addition_accuracy_and_text_training(tmp_path):
    task = data.AdditionTask(digits=1, train_examples=60, val_examples=20, seed=0)
    model = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=0)
    metrics = evaluate(model, task, n_windows=20)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "kl_to_true" not in metrics
    path = tmp_path / "text.txt"
    path.write_text("abcabcabd" * 40, encoding="utf-8")
    text = data.load_task("text", data=str(path), block_size=8)
    model = TransformerLM(preset("tiny", text.tokenizer.vocab_size, text.block_size), seed=0)
    history = train(model, text, TrainConfig(steps=30, batch_size=8, eval_every=30, eval_windows=8, warmup=2),
                    progress=False)
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_cli_train(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--task", "grammar", "--preset", "tiny", "--steps", "6", "--eval-every", "3",
                 "--batch-size", "4", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "entropy floor" in printed and "unigram baseline" in printed
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["steps"] == 6 and summary["kl_to_true"] > 0
    assert len(open(os.path.join(out, "metrics.jsonl")).readlines()) == 3  # steps 0, 3, 6


def test_cli_train_reports_a_bad_data_file(tmp_path, capsys):
    assert main(["train", "--task", "text", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path)]) == 2
    assert "minikd train: error: data file" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # nothing written


def test_bench_train_step_runs_and_agrees_with_pytorch_when_present(capsys):
    assert main(["bench", "train-step", "--presets", "tiny", "--repeat", "1", "--batch-size", "2",
                 "--block-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed
    counted = re.search(r"host reads per step \(counted on the strict backend\): tiny 0 transfers \+ (\d+) sync", printed)
    assert counted and 0 < int(counted.group(1)) <= 8, printed  # the bound of tests/test_host_reads.py
    if "PyTorch not installed" not in printed:
        assert "agree" in printed and "DISAGREE" not in printed
