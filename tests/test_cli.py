"""The command line: ``minikd check`` and ``minikd bench kd-loss`` on small sizes."""

import argparse
import inspect
import json
import subprocess
import sys
from dataclasses import asdict

from minikd import backend
from minikd.tools import cli


def test_check_reports_every_op_and_passes(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    for name in ("matmul (batched)", "getitem (gather)", "kl_div reverse", "jsd", "distillation_loss jsd additive"):
        assert name in out
    assert "FAILED" not in out and "all gradients agree" in out


def test_bench_kd_loss_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "kd-loss", "--N", "256", "--V", "4000", "--repeat", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["N"] == 256 and result["V"] == 4000 and result["minikd"]["median_s"] > 0
    # the fused NumPy path holds its gradient and one more logit-sized array; the plain path (cupy,
    # strict) about eleven full-size temporaries at its peak
    assert 0 < result["minikd"]["peak_extra_logit_buffers"] < (3 if backend.fast_paths_enabled() else 12)
    if result["torch"] is not None:  # PyTorch is optional: when present, values and gradients must agree
        assert result["torch"]["agrees"]
    assert "kd-loss" in capsys.readouterr().out


def test_python_dash_m_and_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "minikd", "bench", "nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr


def test_version_and_every_flag_has_help_and_shows_its_default(capsys):
    import pytest

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("minikd ")
    top = cli.parser()
    commands = next(a for a in top._actions if a.dest == "command")
    listed = {action.dest: action.help for action in commands._choices_actions}  # `minikd --help`'s list
    assert set(listed) == set(commands.choices) and all(listed.values()), listed
    for name, sub in commands.choices.items():
        parsers = [sub]
        for action in sub._actions:  # bench has kinds of its own
            if getattr(action, "choices", None) and isinstance(action.choices, dict):
                parsers += list(action.choices.values())
        for parser in parsers:
            for action in parser._actions:
                if action.dest in ("help", "benchmark"):
                    continue
                assert action.help, f"minikd {name}: {action.option_strings or action.dest} has no help text"
                if action.choices is not None and action.default is not None:
                    assert action.default in action.choices, f"minikd {name}: {action.option_strings} default"
                if action.dest == "out" and any(a.dest == "resume" for a in parser._actions):
                    # a run folder: the command's own, inside the git-ignored runs/
                    assert action.default == f"runs/{name.replace('-', '_')}", (name, action.default)
            assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter, f"minikd {name} hides its defaults"
            parser.format_help()


def test_cli_defaults_come_from_the_config_dataclasses():
    from minikd.nn.model import PRESETS, ModelConfig
    from minikd.recipes import weak_to_strong
    from minikd.recipes.distill import DistillConfig
    from minikd.recipes.train import OPTIMIZERS, TrainConfig
    from minikd.recipes.weak_to_strong import WeakToStrongConfig
    from minikd.tasks.data import TASKS

    top = cli.parser()
    distill = top.parse_args(["distill", "--teacher", "x"])
    assert (distill.lam, distill.T, distill.divergence, distill.form) == (
        DistillConfig.lam, DistillConfig.T, DistillConfig.divergence, DistillConfig.form)
    assert (distill.steps, distill.batch_size, distill.lr) == (TrainConfig.steps, TrainConfig.batch_size, TrainConfig.lr)
    train = top.parse_args(["train"])  # by default, the grammar teacher (as `minikd train --help` says)
    assert (train.task, train.preset, train.optimizer, train.dropout) == ("grammar", "teacher", TrainConfig.optimizer,
                                                                          ModelConfig.dropout)
    (train_parser,) = (a.choices["train"] for a in top._actions if a.dest == "command")
    choices = {a.dest: a.choices for a in train_parser._actions if a.choices is not None}
    assert choices == {"task": TASKS, "preset": tuple(PRESETS), "optimizer": OPTIMIZERS}  # from their owners
    (w2s_parser,) = (a.choices["weak-to-strong"] for a in top._actions if a.dest == "command")
    assert {a.dest: a.choices for a in w2s_parser._actions if a.choices is not None} == {
        "weak_preset": tuple(PRESETS), "strong_preset": tuple(PRESETS)}
    w2s = vars(top.parse_args(["weak-to-strong"]))
    assert {name: w2s[name] for name in asdict(WeakToStrongConfig())} == asdict(WeakToStrongConfig())
    defaults = inspect.signature(weak_to_strong.run).parameters  # and the other flags', run()'s
    assert {name: w2s[name] for name in ("batch_size", "seed", "out")} == {
        name: defaults[name].default for name in ("batch_size", "seed", "out")}


def test_generate_and_eval_on_a_trained_run(tmp_path, capsys):
    from minikd.recipes.train import TrainConfig

    run = tmp_path / "run"
    assert cli.main(["train", "--task", "addition", "--preset", "tiny", "--steps", "4", "--eval-every", "4",
                     "--out", str(run), "--quiet"]) == 0
    accuracy = json.load(open(run / "summary.json"))["accuracy"]  # the printout reads the summary's
    assert f"exact-match accuracy {accuracy:.1%} on {TrainConfig.eval_windows} validation problems" \
        in capsys.readouterr().out
    assert cli.main(["generate", str(run), "--prompt", "123+045=", "--max-new-tokens", "4", "--greedy",
                     "--samples", "2"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].startswith("123+045=") and len(lines[0]) == 12
    assert cli.main(["generate", str(run), "--prompt", "12+", "--max-new-tokens", "3", "--samples", "3",
                     "--seed", "1"]) == 0
    sampled = capsys.readouterr().out.split()
    assert cli.main(["generate", str(run), "--prompt", "12+", "--max-new-tokens", "3", "--samples", "3",
                     "--seed", "1"]) == 0
    assert capsys.readouterr().out.split() == sampled  # seeded
    assert cli.main(["eval", str(run), "--windows", "32", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    from minikd.recipes import checkpoint
    from minikd.recipes.train import evaluate
    from minikd.tasks.data import AdditionTask

    direct = evaluate(checkpoint.load_model(str(run / "checkpoint.npz")), AdditionTask(seed=0), 32)
    assert metrics["task"] == "addition" and metrics["val_loss"] == direct["val_loss"]
    assert metrics["accuracy"] == direct["accuracy"] and abs(metrics["val_ppl"] - 2.718281828 ** direct["val_loss"]) < 1e-6


def test_generate_refuses_symbols_outside_the_vocabulary(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--task", "addition", "--preset", "tiny", "--steps", "2", "--eval-every", "2",
                     "--out", str(run), "--quiet"]) == 0
    assert cli.main(["generate", str(run), "--prompt", "12*3"]) == 2
    assert "outside the vocabulary" in capsys.readouterr().err
