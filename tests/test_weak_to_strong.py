"""Weak-to-strong: PGR on hand-made numbers, the loss's limits and schedule, an end-to-end run, errors."""

import json
import math

import pytest

from minikd.tasks import data
from minikd import functional as F
from minikd.tools.cli import main
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.weak_to_strong import WeakToStrongConfig, WeakToStrongLoss, pgr, run


def test_pgr_on_hand_made_numbers():
    assert pgr(weak=0.2, student=0.6, ceiling=1.0) == pytest.approx(0.5)
    assert pgr(0.2, 0.2, 1.0) == 0.0 and pgr(0.2, 1.0, 1.0) == 1.0
    assert pgr(0.5, 0.4, 0.9) == pytest.approx(-0.25)  # worse than the weak teacher
    assert pgr(2.0, 1.5, 1.0) == pytest.approx(0.5)  # a loss (lower is better) gives the same fraction
    with pytest.raises(ValueError, match="undefined"):
        pgr(0.5, 0.7, 0.5)
    with pytest.raises(ValueError, match="student must be a finite number"):
        pgr(0.5, math.nan, 0.9)


@pytest.fixture(scope="module")
def task():
    return data.AdditionTask(digits=2, train_examples=400, val_examples=40, seed=0)


def model(task, name="tiny", seed=0):
    return TransformerLM(preset(name, task.tokenizer.vocab_size, task.block_size), seed=seed)


def test_lam_zero_learns_from_the_verified_rows_alone(task):
    config = WeakToStrongConfig(lam=0.0, verified_batch=4)
    verified = task.with_train_examples(task.examples["train"][:50])
    loss = WeakToStrongLoss(model(task, seed=9), verified, config, steps=10, alpha_max=0.5)
    student = model(task, "small")
    x, y = task.batch("train", 6, seed=0, step=3)
    x_true, y_true = loss._verified_rows(3)
    assert x_true.shape[0] == 4
    expected = F.cross_entropy(student(x_true), y_true).item()  # causal: other rows cannot matter
    assert loss(student, x, y, 3).item() == pytest.approx(expected, rel=1e-5)


def test_confidence_weight_warms_up_linearly(task):
    config = WeakToStrongConfig(alpha_warmup=0.25)
    loss = WeakToStrongLoss(model(task), task, config, steps=100, alpha_max=0.6)
    assert [loss.alpha_at(t) for t in (0, 10, 25, 80)] == pytest.approx([0.0, 0.24, 0.6, 0.6])


def test_end_to_end_writes_the_table(task, tmp_path, capsys):
    config = WeakToStrongConfig(weak_preset="tiny", weak_steps=3, strong_preset="small", steps=3, n_verified=20,
                                verified_batch=2)
    report = run(config, out=str(tmp_path), batch_size=6, task=task, progress=False)
    printed = capsys.readouterr().out
    assert "confidence loss" in printed and "PGR" in printed
    saved = json.load(open(tmp_path / "results.json"))
    assert set(saved["accuracy"]) == {"weak", "ceiling", "student", "student_confidence"}
    a = saved["accuracy"]
    for name, value in saved["pgr"].items():  # the PGR written is the one its accuracies give, or None
        assert value == (None if a["ceiling"] == a["weak"] else pytest.approx(pgr(a["weak"], a[name], a["ceiling"])))
    assert 0.0 <= report["weak_label_accuracy"] <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"lam": 1.5}, "lam must be in"),
    ({"T": -1.0}, "T must be"),
    ({"alpha_max": 2.0}, "alpha_max must be in"),
    ({"n_verified": 0}, "n_verified must be a positive integer"),
    ({"strong_preset": "huge"}, "strong_preset"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeakToStrongConfig(**kwargs)


def test_cli_errors_write_nothing(tmp_path, capsys):
    for args, message in ((["--verified-batch", "40"], "must be smaller than batch_size"),
                          (["--n-verified", "30000"], "must be smaller than the 20000 training problems"),
                          (["--lam", "-1"], "lam must be in")):
        fresh = tmp_path / "never"
        assert main(["weak-to-strong", *args, "--out", str(fresh), "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert not fresh.exists()
