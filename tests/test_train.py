"""Training, checkpoints and resuming: exact round trips, resume = uninterrupted, clear errors."""

import json
import os
import re
from dataclasses import replace

import numpy as np
import pytest
from reference import assert_same_params

from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd.tools.cli import main
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, cross_entropy_loss, evaluate, read_metrics, train, unigram_loss
from minikd.recipes.train import run as train_run


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


def stop_at(stop):
    """The default loss, interrupted (as by Ctrl-C) at step ``stop``."""
    def loss_fn(model, x, y, step):
        if step == stop:
            raise KeyboardInterrupt
        return cross_entropy_loss(model, x, y, step)
    return loss_fn


def test_resume_equals_uninterrupted(task, tmp_path, capsys):
    """Stop after step 6 (an error in the loss at step 7), resume: the same losses and weights, bit for bit."""
    whole = tiny_model(task, dropout=0.1)
    history = train(whole, task, CONFIG, out=str(tmp_path / "whole"), progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(task, dropout=0.1), task, CONFIG, out=str(tmp_path / "split"), loss_fn=stop_at(7),
              progress=False)
    capsys.readouterr()
    resumed = tiny_model(task, dropout=0.1)
    train(resumed, task, CONFIG, out=str(tmp_path / "split"), resume=True)
    assert "| 12/12 [" in capsys.readouterr().err.rstrip().split("\r")[-1]  # it counts on from the resumed step 4
    assert_same_params(whole, resumed)
    with open(tmp_path / "split" / "metrics.jsonl") as f:
        split_records = [json.loads(line) for line in f]
    assert losses(split_records) == losses(history)


def test_train_resume_names_each_changed_training_setting(task, tmp_path):
    """``train(resume=True)`` itself (not only the run folder) refuses a checkpoint made with other
    TrainConfig values, naming every differing field, and leaves the folder as it was."""
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(task), task, CONFIG, out=str(tmp_path), loss_fn=stop_at(7), progress=False)
    other = replace(CONFIG, seed=6, steps=16)
    with pytest.raises(ValueError, match=r"trained with other settings \(seed: was 5, now 6; steps: was 12, now 16\)"):
        train(tiny_model(task), task, other, out=str(tmp_path), resume=True, progress=False)
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [0, 4]


def test_read_metrics_skips_a_cut_line_and_stops_at_last_step(tmp_path):
    """Every readable record in order (a line that is not JSON is skipped, and reading goes on after
    it), or only those up to ``last_step``; no file, no records."""
    assert read_metrics(str(tmp_path)) == []
    lines = [json.dumps({"step": 0}), '{"step": 4, "val_lo', json.dumps({"step": 4}), json.dumps({"step": 8})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert read_metrics(str(tmp_path)) == [{"step": 0}, {"step": 4}, {"step": 8}]
    assert read_metrics(str(tmp_path), last_step=4) == [{"step": 0}, {"step": 4}]


def test_a_fresh_run_starts_a_new_metrics_file_and_the_model_keeps_its_mode(task, tmp_path):
    """Without resume, ``train`` into a folder that holds a previous run's metrics.jsonl starts it
    afresh; the model leaves ``train`` in the mode (training or evaluation) it came in."""
    config = replace(CONFIG, steps=2, eval_every=2)
    for mode in (True, False):
        model = tiny_model(task).train(mode)
        train(model, task, config, out=str(tmp_path), progress=False)
        assert model.training is mode
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [0, 2]  # the second run's records only


def test_checkpoints_are_written_from_the_first_evaluation_after_step_0(task, tmp_path):
    """Step 0 (the untrained model) is evaluated but not saved: a run stopped at step 0 leaves no
    checkpoint (it starts again from 0); with eval_every = 1, one stopped at step 1 has step 1's."""
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(task), task, CONFIG, out=str(tmp_path / "a"), loss_fn=stop_at(0), progress=False)
    assert not (tmp_path / "a" / "checkpoint.npz").exists() and read_metrics(str(tmp_path / "a"))[0]["step"] == 0
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(task), task, replace(CONFIG, eval_every=1), out=str(tmp_path / "b"), loss_fn=stop_at(1),
              progress=False)
    assert checkpoint.load(str(tmp_path / "b" / "checkpoint.npz")).step == 1


def test_an_error_before_the_first_update_is_not_blamed_on_the_learning_rate(task):
    """Before any update nothing can have diverged: the loss's own error comes through, even when some
    trained weights (here those of an ``extra`` module) are not finite."""
    broken = tiny_model(task)
    broken.wte.weight.data[...] = float("nan")

    def refuses(model, x, y, step):
        raise ValueError("the loss's own complaint")

    with pytest.raises(ValueError, match="^the loss's own complaint$"):
        train(tiny_model(task), task, CONFIG, loss_fn=refuses, extra=broken, progress=False)


def test_an_error_after_updates_is_blamed_on_the_learning_rate_only_when_something_diverged(task):
    """From step 1 on, a ValueError from the loss is reported as divergence (naming lr) when some trained
    weights (here an ``extra`` module's) or the model's logits are no longer finite, and passed on as it
    is when everything is finite."""
    def refuses_at_1(model, x, y, step):
        if step == 1:
            raise ValueError("the loss's own complaint")
        return cross_entropy_loss(model, x, y, step)

    with pytest.raises(ValueError, match="^the loss's own complaint$"):
        train(tiny_model(task), task, CONFIG, loss_fn=refuses_at_1, extra=tiny_model(task), progress=False)
    broken = tiny_model(task)
    broken.wte.weight.data[...] = float("nan")  # no gradient reaches it: the optimizer leaves it as it is
    with pytest.raises(ValueError, match=r"^training diverged: by step 1 .*\(the loss's own complaint\); lr=0.003 "):
        train(tiny_model(task), task, CONFIG, loss_fn=refuses_at_1, extra=broken, progress=False)


def test_resume_names_a_missing_optimizer_buffer(task, tmp_path):
    """A checkpoint without training settings is resumed as far as it fits; an optimizer state that is
    not this optimizer's (SGD's velocity where AdamW needs m and v) is a CheckpointError naming it."""
    model = tiny_model(task)
    checkpoint.save(str(tmp_path / "checkpoint.npz"), model, replace(CONFIG, optimizer="sgd").make_optimizer(model),
                    step=4)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint '.*checkpoint.npz': the optimizer state lacks 'm.0'"):
        train(tiny_model(task), task, CONFIG, out=str(tmp_path), resume=True, progress=False)


def test_resume_needs_a_checkpoint(task, tmp_path):
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        train(tiny_model(task), task, CONFIG, out=str(tmp_path), resume=True, progress=False)


def test_resume_refuses_a_different_model(task, tmp_path):
    train(tiny_model(task), task, CONFIG, out=str(tmp_path), progress=False)
    other = TransformerLM(preset("small", task.tokenizer.vocab_size, task.block_size))
    with pytest.raises(ValueError, match=r"different model \(n_embd: was 32, now 48; n_layer: was 1, now 2\)"):
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
    """The run trains on the grammar of its --seed; summary.json holds the run's task, preset, size and
    steps, the unigram baseline of that task and the final record; the printout names them."""
    out = str(tmp_path / "run")
    assert main(["train", "--task", "grammar", "--preset", "tiny", "--steps", "6", "--eval-every", "3",
                 "--batch-size", "4", "--seed", "3", "--out", out, "--quiet"]) == 0
    printed, bar = capsys.readouterr()
    assert "entropy floor" in printed and "unigram baseline" in printed and bar == ""  # --quiet: no bar
    summary = json.load(open(os.path.join(out, "summary.json")))
    records = read_metrics(out)
    assert [r["step"] for r in records] == [0, 3, 6]
    model = checkpoint.load_model(os.path.join(out, "checkpoint.npz"))
    task = data.load_task("grammar", seed=3)
    assert summary == {"task": "grammar", "preset": "tiny", "params": model.num_params(), "steps": 6,
                       "unigram_loss": unigram_loss(task), **{k: v for k, v in records[-1].items() if k != "step"}}
    assert summary["kl_to_true"] > 0
    assert summary["val_loss"] == pytest.approx(evaluate(model, task, TrainConfig.eval_windows)["val_loss"], rel=1e-6)
    other_seed = evaluate(model, data.load_task("grammar", seed=0), TrainConfig.eval_windows)["val_loss"]
    assert summary["val_loss"] != pytest.approx(other_seed, rel=1e-6)  # the seed's task, not seed 0's
    assert f"model 'tiny': {model.num_params():,} parameters" in printed
    assert printed.rstrip().endswith(f"wrote {os.path.join(out, 'checkpoint.npz')}, metrics.jsonl, summary.json")


def test_progress_bar_by_default_none_when_quiet(task, tmp_path, capsys):
    """``train`` and ``run`` show a progress bar on stderr by default (steps done of the total, the
    validation loss), ``minikd train`` unless --quiet; ``progress=False`` shows nothing."""
    config = replace(CONFIG, steps=2, eval_every=2)
    history = train(tiny_model(task), task, config)
    bar = capsys.readouterr().err
    final = bar.rstrip().split("\r")[-1]  # the bar as it was left
    assert final.startswith("train grammar") and "| 2/2 [" in final and "step/s" in final, bar
    assert f"val_loss={history[-1]['val_loss']:.4f}" in final, bar
    train(tiny_model(task), task, config, progress=False)
    assert capsys.readouterr().err == ""
    path = tmp_path / "text.txt"
    path.write_text("abcabcabd" * 100, encoding="utf-8")  # validation: 90 characters, one window of 64
    train_run("text", "tiny", config, str(tmp_path / "run"), data=str(path), out_fn=lambda line: None)
    assert "train text" in capsys.readouterr().err
    assert main(["train", "--task", "text", "--data", str(path), "--preset", "tiny", "--steps", "2", "--eval-every",
                 "2", "--batch-size", "4", "--out", str(tmp_path / "cli")]) == 0
    assert "train text" in capsys.readouterr().err


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
