"""Weak-to-strong: PGR on hand-made numbers, the loss's limits and schedule, an end-to-end run, errors."""

import inspect
import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
from reference import assert_same_params

from minikd import backend
from minikd.tasks import data
from minikd import functional as F
from minikd.recipes.train import TrainConfig, read_metrics, train
from minikd.tools.cli import main
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.weak_to_strong import Experiment, WeakToStrongConfig, WeakToStrongLoss, _print_table, pgr, run


def test_pgr_on_hand_made_numbers():
    assert pgr(weak=0.2, student=0.6, ceiling=1.0) == pytest.approx(0.5)
    assert pgr(0.2, 0.2, 1.0) == 0.0 and pgr(0.2, 1.0, 1.0) == 1.0
    assert pgr(0.5, 0.4, 0.9) == pytest.approx(-0.25)  # worse than the weak teacher
    assert pgr(2.0, 1.5, 1.0) == pytest.approx(0.5)  # a loss (lower is better) gives the same fraction
    with pytest.raises(ValueError, match="undefined"):
        pgr(0.5, 0.7, 0.5)
    with pytest.raises(ValueError, match="student must be a finite number"):
        pgr(0.5, math.nan, 0.9)
    with pytest.raises(ValueError, match="^pgr: weak must be a finite number, got nan$"):
        pgr(math.nan, 0.5, 0.9)
    with pytest.raises(ValueError, match="^pgr: ceiling must be a finite number, got inf$"):
        pgr(0.5, 0.7, math.inf)


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


def test_verified_rows_are_fresh_uniform_draws_from_the_verified_set(task):
    """Each step draws ``verified_batch`` rows uniformly, with replacement, from the verified problems
    (the first and the last included), anew each step and for each seed (0 by default); they are the
    problems' (x, y) pairs."""
    examples = task.examples["train"][:5]
    verified = task.with_train_examples(examples)
    config = WeakToStrongConfig(verified_batch=4)

    def picks(step, **seed):
        loss = WeakToStrongLoss(model(task), verified, config, steps=10, alpha_max=0.0, **seed)
        x, y = (backend.to_numpy(a) for a in loss._verified_rows(step))
        rows = [int(np.flatnonzero((examples[:, :-1] == row).all(axis=1))[0]) for row in x]
        np.testing.assert_array_equal(y, backend.to_numpy(task.pairs(examples[rows])[1]))
        return rows

    drawn = [picks(step, seed=3) for step in range(30)]  # 120 draws miss one of 5 rows with probability < 1e-10
    assert all(len(rows) == 4 for rows in drawn) and set(sum(drawn, [])) == set(range(5))
    assert drawn[0] != drawn[1] and drawn[0] != picks(0, seed=4) and picks(0) == picks(0, seed=0)
    # a stream of their own: with every training problem verified, they are not the batch's rows
    everything = WeakToStrongLoss(model(task), task, config, steps=10, alpha_max=0.0, seed=3)
    for step in range(3):
        x_batch, _ = task.batch("train", 4, seed=3, step=step)
        assert not np.array_equal(backend.to_numpy(everything._verified_rows(step)[0]), backend.to_numpy(x_batch))


def test_confidence_weight_warms_up_linearly(task):
    config = WeakToStrongConfig(alpha_warmup=0.25)
    loss = WeakToStrongLoss(model(task), task, config, steps=100, alpha_max=0.6)
    assert [loss.alpha_at(t) for t in (0, 10, 25, 80)] == pytest.approx([0.0, 0.24, 0.6, 0.6])
    at_once = WeakToStrongLoss(model(task), task, WeakToStrongConfig(alpha_warmup=0.0), steps=100, alpha_max=0.6)
    assert [at_once.alpha_at(t) for t in (0, 1, 50)] == pytest.approx([0.0, 0.6, 0.6])  # no warm-up: α_max at step 1


def test_each_run_is_the_training_it_describes(tmp_path, capsys):
    """weak() and ceiling() train a fresh preset model (the experiment's seed) on the task with
    ``batch_size`` rows per step, ``evaluations`` evaluations besides step 0, each on every validation
    problem (here 300, more than the 256 of the default; 4 evaluations of 4 steps: every step); student() trains on the weak labels with
    ``batch_size − verified_batch`` rows and the WeakToStrongLoss of its λ and α_max, measured against the
    weak teacher. The same trainings done by hand give the same weights and the same final records."""
    task = data.AdditionTask(digits=2, train_examples=60, val_examples=300, seed=0)
    config = WeakToStrongConfig(weak_preset="tiny", weak_steps=4, strong_preset="tiny", steps=4, n_verified=20,
                                verified_batch=2, alpha_warmup=0.5)
    experiment = Experiment(config, task, seed=2, batch_size=6, out=str(tmp_path), progress=False, evaluations=4)
    weak, ceiling = experiment.weak(), experiment.ceiling()
    student = experiment.student("mine", lam=0.3, alpha_max=0.4)
    assert not weak.training

    def by_hand(on_task, rows, **kwargs):
        reference = model(task, seed=2)
        history = train(reference, on_task, TrainConfig(steps=4, batch_size=rows, eval_every=1, eval_windows=300,
                                                        seed=2), progress=False, **kwargs)
        return reference, history

    loss = WeakToStrongLoss(weak, experiment.verified, replace(config, lam=0.3), 4, alpha_max=0.4, seed=2)
    for name, trained, (reference, history) in (
            ("weak", weak, by_hand(task, 6)), ("ceiling", ceiling, by_hand(task, 6)),
            ("mine", student, by_hand(experiment.weak_labelled, 4, loss_fn=loss, describe=loss.describe,
                                      teacher=weak))):
        assert_same_params(trained, reference)
        assert [r["step"] for r in read_metrics(str(tmp_path / name))] == [0, 1, 2, 3, 4]
        final = {k: v for k, v in experiment.results[name].items() if k != "elapsed_s"}
        assert final == {k: v for k, v in history[-1].items() if k != "elapsed_s"}, name
        assert 0 < experiment.timings[name] < 60
    assert experiment.results["mine"]["alpha"] == pytest.approx(0.4) and "kl_to_teacher" in experiment.results["mine"]
    assert capsys.readouterr().err == ""  # progress=False: no bars


def test_resuming_an_experiment_only_loads_its_finished_runs(tmp_path, capsys):
    """With ``resume`` a run whose folder holds its finished training is loaded, not trained again: the
    same weights, its metrics.jsonl untouched (a new training would log new times); its bar is full."""
    task = data.AdditionTask(digits=1, train_examples=40, val_examples=10, seed=0)
    config = WeakToStrongConfig(weak_preset="tiny", weak_steps=10, strong_preset="tiny", steps=2, n_verified=10,
                                verified_batch=2)
    first = Experiment(config, task, batch_size=4, out=str(tmp_path), progress=False)
    weak = first.weak()
    logged = (tmp_path / "weak" / "metrics.jsonl").read_bytes()
    assert [r["step"] for r in read_metrics(str(tmp_path / "weak"))] == [0, 2, 4, 6, 8, 10]  # 5 evaluations by default
    again = Experiment(config, task, batch_size=4, out=str(tmp_path), progress=True)
    again.resume = True
    assert_same_params(again.weak(), weak)
    assert (tmp_path / "weak" / "metrics.jsonl").read_bytes() == logged
    assert again.results["weak"] == first.results["weak"]
    assert "| 10/10 [" in capsys.readouterr().err
    Experiment(config, task, batch_size=4, out=str(tmp_path), progress=False).weak()  # not resumed: trained anew
    assert (tmp_path / "weak" / "metrics.jsonl").read_bytes() != logged  # (its times are new)


def test_the_report_gathers_each_runs_results(tmp_path, monkeypatch):
    """run()'s report (returned, printed, written to results.json) holds each run's final record and
    accuracy and the PGR that its accuracies give; the confidence run has α_max (trainings replaced
    by set results, so that the accuracies differ)."""
    accuracy = {"weak": 0.25, "ceiling": 0.75, "student": 0.5, "student_confidence": 0.625}

    def finish(self, name, **record):
        self.results[name], self.timings[name] = {"accuracy": accuracy[name], **record}, 1.0

    def weak(self):
        finish(self, "weak")
        self.weak_model, self.weak_label_accuracy = "a weak model", 0.375

    monkeypatch.setattr(Experiment, "weak", weak)
    monkeypatch.setattr(Experiment, "ceiling", lambda self: finish(self, "ceiling"))
    monkeypatch.setattr(Experiment, "student", lambda self, name, alpha_max=0.0: finish(self, name, alpha=alpha_max))
    config, lines = WeakToStrongConfig(n_verified=20, verified_batch=2), []
    report = run(config, out=str(tmp_path), batch_size=6, task=data.AdditionTask(digits=1, train_examples=60, val_examples=20, seed=0),
                 out_fn=lines.append)
    assert report["pgr"] == {"student": pytest.approx(0.5), "student_confidence": pytest.approx(0.75)}
    assert report["accuracy"] == accuracy and report["weak_label_accuracy"] == 0.375
    assert report["final"]["student"]["alpha"] == 0.0 and report["final"]["student_confidence"]["alpha"] == 0.5
    assert json.load(open(tmp_path / "results.json")) == json.loads(json.dumps(report))
    assert lines[-1] == f"wrote {tmp_path / 'results.json'}" and "0.750" in "\n".join(lines)


def test_end_to_end_writes_the_table(task, tmp_path, capsys):
    config = WeakToStrongConfig(weak_preset="tiny", weak_steps=3, strong_preset="small", steps=3, n_verified=20,
                                verified_batch=2)
    report = run(config, out=str(tmp_path), batch_size=6, task=task, progress=False)
    printed = capsys.readouterr().out
    assert "confidence loss" in printed and "PGR" in printed
    saved = json.load(open(tmp_path / "results.json"))
    assert saved == json.loads(json.dumps(report))  # the file holds the report returned
    runs = {"weak", "ceiling", "student", "student_confidence"}
    assert set(saved["accuracy"]) == set(saved["final"]) == set(saved["timings"]) == runs
    assert saved["settings"] == {**asdict(config), "seed": 0, "batch_size": 6, "train_problems": 400,
                                 "val_problems": 40, "backend": backend.name()}
    assert all(saved["accuracy"][name] == saved["final"][name]["accuracy"] for name in runs)
    assert saved["final"]["student_confidence"]["alpha"] == config.alpha_max and saved["final"]["student"]["alpha"] == 0
    a = saved["accuracy"]
    for name, value in saved["pgr"].items():  # the PGR written is the one its accuracies give, or None
        assert value == (None if a["ceiling"] == a["weak"] else pytest.approx(pgr(a["weak"], a[name], a["ceiling"])))
    assert 0.0 <= report["weak_label_accuracy"] <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"lam": 1.5}, "lam must be in"),
    ({"T": -1.0}, "T must be"),
    ({"alpha_max": 1.01}, r"alpha_max must be in \[0, 1\], got 1.01"),
    ({"alpha_warmup": -0.01}, r"alpha_warmup must be in \[0, 1\], got -0.01"),
    ({"n_verified": 0}, "n_verified must be a positive integer"),
    ({"weak_steps": 0}, "weak_steps must be a positive integer"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"verified_batch": 0}, "verified_batch must be a positive integer"),
    ({"strong_preset": "huge"}, "strong_preset"),
    ({"weak_preset": "huge"}, "weak_preset"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeakToStrongConfig(**kwargs)


def test_config_accepts_the_ends_of_its_ranges():
    """α_max and the warm-up fraction may be 0 or 1; NumPy numbers for λ and T become Python floats."""
    for value in (0.0, 1.0):
        assert WeakToStrongConfig(alpha_max=value, alpha_warmup=value).alpha_max == value
    config = WeakToStrongConfig(lam=np.float32(0.25), T=np.float64(2.0))
    assert (type(config.lam), type(config.T), config.lam, config.T) == (float, float, 0.25, 2.0)


def test_experiment_errors(task):
    """The verified rows must leave room for weak-labelled ones, the verified problems for unlabelled
    ones; the student needs the weak teacher first."""
    config = WeakToStrongConfig(weak_preset="tiny", strong_preset="tiny", n_verified=20, verified_batch=6)
    with pytest.raises(ValueError, match=r"verified_batch \(6\) must be smaller than batch_size \(6\)"):
        Experiment(config, task, batch_size=6)
    with pytest.raises(ValueError, match=r"n_verified \(400\) must be smaller than the 400 training problems"):
        Experiment(WeakToStrongConfig(n_verified=400), task)
    experiment = Experiment(config, task, batch_size=7)  # the largest verified_batch, n_verified that fit
    Experiment(WeakToStrongConfig(n_verified=399), task)
    with pytest.raises(ValueError, match=r"^train the weak teacher first: call weak\(\) before student\(\)$"):
        experiment.student()


def test_experiment_pgr_reads_the_runs_accuracies(task):
    """Experiment.pgr(name) = pgr(weak, name, ceiling) on the runs' exact-match accuracies; None where the
    ceiling equals the weak teacher."""
    experiment = Experiment(WeakToStrongConfig(n_verified=20), task)
    defaults = inspect.signature(run).parameters  # by default, run()'s seed and batch size, with bars
    assert (experiment.seed, experiment.batch_size, experiment.progress) == (
        defaults["seed"].default, defaults["batch_size"].default, True)
    experiment.results = {"weak": {"accuracy": 0.25}, "ceiling": {"accuracy": 0.75}, "mine": {"accuracy": 0.625}}
    assert experiment.pgr("mine") == pytest.approx(0.75) and experiment.accuracy("mine") == 0.625
    experiment.results["ceiling"] = {"accuracy": 0.25}
    assert experiment.pgr("mine") is None


def test_the_table_shows_each_runs_accuracy_and_pgr():
    """One row per run with its settings, its exact-match accuracy and its PGR (by definition 0 for the
    weak teacher and 1 for the ceiling; "undefined" where it is None), and the weak labels' accuracy."""
    config = WeakToStrongConfig()
    report = {"settings": asdict(config), "weak_label_accuracy": 0.25,
              "accuracy": {"weak": 0.125, "ceiling": 0.625, "student": 0.375, "student_confidence": 0.5},
              "pgr": {"student": 0.5, "student_confidence": None}, "timings": {"weak": 3.0, "ceiling": 12.0}}
    lines = []
    _print_table(report, lines.append)
    text = "\n".join(lines)
    assert "weak labels: 25.0% of the weak-labelled training problems are right" in text
    assert [line.split() for line in text.splitlines() if line.strip().startswith("model")] == [
        ["model", "exact", "match", "PGR"]]

    def row(start):
        (line,) = [" ".join(line.split()) for line in text.splitlines() if line.strip().startswith(start)]
        return line  # its words, single-spaced

    assert row(f"weak teacher ('{config.weak_preset}', {config.weak_steps} steps)").endswith("12.5% 0 by definition")
    assert row(f"student, weak labels + {config.n_verified} verified (λ={config.lam})").endswith("37.5% 0.500")
    assert row(f"+ confidence loss (α_max={config.alpha_max})").endswith("50.0% undefined")
    assert row(f"ceiling ('{config.strong_preset}', all ground truth)").endswith("62.5% 1 by definition")
    assert lines[-1].strip() == "times: weak 3 s, ceiling 12 s"


def test_cli_errors_write_nothing(tmp_path, capsys):
    for args, message in ((["--verified-batch", "40"], "must be smaller than batch_size"),
                          (["--n-verified", "30000"], "must be smaller than the 20000 training problems"),
                          (["--lam", "-1"], "lam must be in"),
                          (["--batch-size", "0"], "batch_size must be a positive integer, got 0")):
        fresh = tmp_path / "never"
        assert main(["weak-to-strong", *args, "--out", str(fresh), "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert not fresh.exists()
