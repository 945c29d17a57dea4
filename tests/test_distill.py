"""Token-level distillation: the frozen teacher, the λ limits on whole training runs, the knobs, the demo."""

import json
import os
import re

import numpy as np
import pytest
from reference import arr, assert_same_params, params

from minikd import backend
from minikd import functional as F
from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd.tasks.data import IGNORE_INDEX as IGNORE
from minikd.tools.cli import main
from minikd.recipes.distill import DistillConfig, Distiller, corrupt_labels, resolve_bias
from minikd.recipes.teacher import TeacherCache, teacher_logits
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, train


@pytest.fixture(scope="module")
def task():
    return data.GrammarTask(block_size=12, train_tokens=20_000, val_tokens=4_000, seed=0)


@pytest.fixture(scope="module")
def teacher(task):
    model = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=7)
    train(model, task, TrainConfig(steps=10, batch_size=8, eval_every=10, eval_windows=8), progress=False)
    return model.eval()


CONFIG = TrainConfig(steps=8, batch_size=8, eval_every=4, eval_windows=16, warmup=2, seed=3)


def student(task):
    return TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=1)


def test_teacher_is_bit_identical_after_distillation(task, teacher):
    before = params(teacher)
    teacher.zero_grad()  # left over from its own training
    train(student(task), task, CONFIG, loss_fn=Distiller(teacher, DistillConfig(), CONFIG.steps), progress=False,
          teacher=teacher)
    for name, value in before.items():
        np.testing.assert_array_equal(value, params(teacher)[name], err_msg=name)
    assert all(p.grad is None for p in teacher.parameters())  # no gradient ever reached it


def test_lam_zero_is_cross_entropy_training(task, teacher):
    """Same seed: λ = 0 distillation and CE-only training give identical student parameters."""
    ce, kd = student(task), student(task)
    train(ce, task, CONFIG, progress=False)
    train(kd, task, CONFIG, loss_fn=Distiller(teacher, DistillConfig(lam=0.0), CONFIG.steps), progress=False)
    assert_same_params(ce, kd)


@pytest.mark.parametrize("bias", [(), (1, 5, 3.0)], ids=["plain", "biased"])
def test_a_teacher_cache_trains_the_same_students_bit_for_bit_with_one_forward_per_step(task, teacher, bias):
    """Students trained on the same batches with one shared cache equal those trained without it; all
    but the first student read every step's logits from the cache."""
    cache = TeacherCache(teacher, bias)
    for config in (DistillConfig(lam=0.5, T=2.0, teacher_bias=bias), DistillConfig(lam=1.0, T=4.0, teacher_bias=bias)):
        plain, cached = student(task), student(task)
        train(plain, task, CONFIG, loss_fn=Distiller(teacher, config, CONFIG.steps), progress=False)
        train(cached, task, CONFIG, loss_fn=Distiller(teacher, config, CONFIG.steps, cache=cache), progress=False)
        assert_same_params(plain, cached)
    assert cache.hits == CONFIG.steps and len(cache.kept) == CONFIG.steps


def test_a_teacher_cache_recomputes_a_different_batch_and_keeps_its_own_copy(task, teacher):
    cache = TeacherCache(teacher)
    (x1, _), (x2, _) = task.batch("train", 4, seed=0, step=0), task.batch("train", 4, seed=1, step=0)
    x1_host = np.array(backend.to_numpy(x1))  # a copy (to_numpy of a NumPy array is the array itself)
    first = backend.to_numpy(cache.logits(x1, 0))
    x1[...] = 0  # the caller reuses its array: the cache compares with its own copy, so this is a new batch
    np.testing.assert_array_equal(backend.to_numpy(cache.logits(x1, 0)), backend.to_numpy(teacher_logits(teacher, x1)))
    np.testing.assert_array_equal(backend.to_numpy(cache.logits(x2, 0)), backend.to_numpy(teacher_logits(teacher, x2)))
    assert cache.hits == 0  # another batch at step 0: computed afresh, and kept instead
    again = backend.to_numpy(cache.logits(backend.from_numpy(x1_host), 0))
    np.testing.assert_array_equal(again, first)
    assert cache.hits == 0 and len(cache.kept) == 1
    assert cache.logits(backend.from_numpy(x1_host), 0) is cache.kept[0][1] and cache.hits == 1
    x3, _ = task.batch("train", 3, seed=0, step=0)  # another shape
    np.testing.assert_array_equal(backend.to_numpy(cache.logits(x3, 0)), backend.to_numpy(teacher_logits(teacher, x3)))
    kept_x, kept_v = cache.kept[0]
    assert kept_x.shape[0] == 3 and cache.kept_bytes == backend.nbytes(kept_x) + backend.nbytes(kept_v)  # replaced


def test_a_teacher_cache_keeps_at_most_max_bytes(task, teacher):
    x, _ = task.batch("train", 4, seed=0, step=0)
    one_step = backend.nbytes(x) + backend.nbytes(teacher_logits(teacher, x))
    cache = TeacherCache(teacher, max_bytes=2 * one_step)
    for step in range(4):
        x, _ = task.batch("train", 4, seed=0, step=step)
        np.testing.assert_array_equal(backend.to_numpy(cache.logits(x, step)),
                                      backend.to_numpy(teacher_logits(teacher, x)))
    assert sorted(cache.kept) == [0, 1] and cache.kept_bytes == 2 * one_step
    assert backend.nbytes(x) == 4 * task.block_size * 8 and backend.nbytes(x == 0) == 4 * task.block_size  # int64, bool


def test_a_distiller_refuses_a_cache_of_another_teacher_or_bias(task, teacher):
    other = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=8)
    for cache, config in ((TeacherCache(other), DistillConfig()), (TeacherCache(teacher, (1, 5, 3.0)), DistillConfig()),
                          (TeacherCache(teacher), DistillConfig(teacher_bias=(1, 5, 3.0)))):
        with pytest.raises(ValueError, match="the cache holds the logits of another teacher or teacher_bias"):
            Distiller(teacher, config, 4, cache=cache)


def test_lam_one_ignores_the_labels(task, teacher):
    """At λ = 1 (interpolated form) corrupting every ground-truth label changes nothing."""
    clean, noisy = student(task), student(task)
    train(clean, task, CONFIG, loss_fn=Distiller(teacher, DistillConfig(lam=1.0), CONFIG.steps), progress=False)
    train(noisy, task, CONFIG, loss_fn=Distiller(teacher, DistillConfig(lam=1.0, label_noise=1.0), CONFIG.steps),
          progress=False)
    assert_same_params(clean, noisy)


def test_label_noise_and_teacher_bias(task, teacher):
    y = arr(np.arange(1000) % 50)
    y[::10] = data.IGNORE_INDEX
    noisy = backend.to_numpy(corrupt_labels(y, 0.3, 60, seed=0, step=0))
    kept = backend.to_numpy(y) != data.IGNORE_INDEX
    assert (noisy[~kept] == data.IGNORE_INDEX).all()  # ignored positions stay ignored
    changed = (noisy != backend.to_numpy(y))[kept].mean()
    assert 0.22 < changed < 0.35  # 30 % drawn, minus the 1/60 that land on the true label
    x, _ = task.batch("val", 4, seed=0, step=0)
    plain = backend.to_numpy(teacher_logits(teacher, x))
    biased = backend.to_numpy(teacher_logits(teacher, x, bias=(0, 5, 10.0)))  # token 0 is "."
    where = backend.to_numpy(x) == 0
    np.testing.assert_allclose(biased[where][:, 5], plain[where][:, 5] + 10.0, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(biased, 5, axis=-1), np.delete(plain, 5, axis=-1))


def test_teacher_bias_tokens_are_checked(task, teacher):
    assert resolve_bias(("the", 7, 2.5), task.tokenizer) == (task.tokenizer.ids["the"], 7, 2.5)
    with pytest.raises(ValueError, match="context token 'thee' is not in the task's vocabulary"):
        resolve_bias(("thee", "cats", 1.0), task.tokenizer)
    with pytest.raises(ValueError, match=r"wrong token must be an id in \[0, 60\), got 60"):
        Distiller(teacher, DistillConfig(teacher_bias=(0, 60, 1.0)), 4)
    with pytest.raises(ValueError, match="bonus must be a finite number"):
        Distiller(teacher, DistillConfig(teacher_bias=(0, 5, float("inf"))), 4)


def test_evaluation_reports_the_schedule_and_the_teacher_metrics(task, teacher):
    config = DistillConfig(lam=0.8, lam_end=0.2, lam_schedule="linear")
    history = train(student(task), task, CONFIG, loss_fn=Distiller(teacher, config, CONFIG.steps), progress=False,
                    teacher=teacher, describe=Distiller(teacher, config, CONFIG.steps).describe)
    assert [r["lam"] for r in history] == pytest.approx([0.8, 0.5, 0.2])
    assert all(0.0 <= r["agreement"] <= 1.0 and r["kl_to_teacher"] >= 0.0 for r in history)


@pytest.mark.parametrize("kwargs, message", [
    ({"T": 0.0}, "T must be a finite number > 0, got T=0.0"),
    ({"T_end": -1.0}, "T_end must be a finite number > 0, got T_end=-1.0"),
    ({"lam": 1.5}, "lam must be in [0, 1] for form='interpolate', got lam=1.5"),
    ({"lam_end": 2.0}, "lam_end must be in [0, 1] for form='interpolate', got lam_end=2.0"),
    ({"lam_end": -1.0, "form": "additive"}, "lam_end must be >= 0 for form='additive', got lam_end=-1.0"),
    ({"lam_schedule": "exp"}, "lam_schedule must be one of 'constant', 'linear', 'cosine', 'step'; got lam_schedule='exp'"),
    ({"T_schedule": "exp"}, "T_schedule must be one of"),
    ({"label_noise": 2.0}, "label_noise must be a fraction in [0, 1], got 2.0"),
    ({"divergence": "hellinger"}, "divergence must be one of 'forward_kl', 'reverse_kl', 'jsd'; got divergence='hellinger'"),
    ({"form": "mixed"}, "form must be one of 'interpolate', 'additive'; got form='mixed'"),
    ({"teacher_bias": (1, 2)}, "teacher_bias must be (context token, wrong token, bonus), got (1, 2)"),
])
def test_config_errors(kwargs, message):
    """Each bad field is named, with its value, at the start of the message."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        DistillConfig(**kwargs)


def test_teacher_bias_errors_name_the_part_that_is_wrong(task, teacher):
    V = teacher.config.vocab_size
    for bias, error, message in [
            ((V, 5, 1.0), ValueError, f"teacher_bias context token must be an id in [0, {V}), got {V}"),
            ((0, -1, 1.0), ValueError, f"teacher_bias wrong token must be an id in [0, {V}), got -1"),
            ((0.5, 5, 1.0), TypeError, "teacher_bias context token must be an integer"),
            ((0, "5", 1.0), TypeError, "teacher_bias wrong token must be an integer"),
            ((0, 5, "big"), TypeError, "teacher_bias bonus must be a number"),
            ((0, 5, float("nan")), ValueError, "teacher_bias bonus must be a finite number, got nan")]:
        with pytest.raises(error, match="^" + re.escape(message)):
            Distiller(teacher, DistillConfig(teacher_bias=bias), 4)
    with pytest.raises(ValueError, match="^" + re.escape("teacher_bias wrong token 'cat s' is not in the task's vocabulary")):
        resolve_bias(("the", "cat s", 1.0), task.tokenizer)


def test_distiller_seeds_its_label_noise_with_the_run_seed_default_0(task, teacher):
    """The noise of step t is corrupt_labels(y, fraction, V, seed, t), with seed 0 unless given."""
    x, y = task.batch("train", 4, seed=0, step=2)
    config = DistillConfig(lam=0.0, label_noise=0.5)
    noisy = {seed: corrupt_labels(y, 0.5, teacher.config.vocab_size, seed, 2) for seed in (0, 1)}
    z = student(task)(x)
    v = teacher(x).data
    losses = [Distiller(teacher, config, 4, **kw).loss(z, v, y, 2).item() for kw in ({}, {"seed": 0}, {"seed": 1})]
    expected = [F.cross_entropy(z, noisy[seed], ignore_index=IGNORE).item() for seed in (0, 0, 1)]
    assert losses == pytest.approx(expected, rel=1e-12) and losses[0] != losses[2]


def test_cli_distill_and_its_errors(tmp_path, capsys, task, teacher):
    teacher_dir = tmp_path / "teacher"
    checkpoint.save(str(teacher_dir / "checkpoint.npz"), teacher, step=10, task="grammar")
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher_dir), "--student-preset", "tiny", "--steps", "4",
                 "--eval-every", "2", "--batch-size", "4", "--schedule", "cosine", "--out", str(out), "--quiet"]) == 0
    assert "top-1 agreement" in capsys.readouterr().out
    schedule = [json.loads(line) for line in open(out / "schedule.jsonl")]
    assert [round(r["lam"], 6) for r in schedule] == [0.5, 0.426777, 0.25, 0.073223]
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in records] == [0, 2, 4]
    biased = tmp_path / "biased"
    assert main(["distill", "--teacher", str(teacher_dir), "--student-preset", "tiny", "--steps", "2",
                 "--batch-size", "4", "--teacher-bias", "the,cats,4", "--hidden-weight", "0.5", "--out", str(biased),
                 "--quiet"]) == 0
    saved = json.load(open(biased / "distill_config.json"))
    assert saved["teacher_bias"] == [task.tokenizer.ids["the"], task.tokenizer.ids["cats"], 4.0]
    assert saved["layer_map"] == [[1, 1]] and saved["hidden_weight"] == 0.5

    failures = [  # a bad value exits 2; a file that cannot be used (a runtime failure) exits 1
        (["--teacher", str(tmp_path / "missing")], "does not exist", 1),
        (["--teacher", str(teacher_dir), "--T", "0"], "T must be", 2),
        (["--teacher", str(teacher_dir), "--lam", "-0.5"], "lam must be in", 2),
        (["--teacher", str(teacher_dir), "--task", "addition"], "vocabularies differ", 2),
        (["--teacher", str(teacher_dir), "--teacher-bias", "the,cats"], "--teacher-bias must be CONTEXT,WRONG,BONUS", 2),
        (["--teacher", str(teacher_dir), "--teacher-bias", "the,kats,3"], "'kats' is not in the task's vocabulary", 2),
        (["--teacher", str(teacher_dir), "--layer-map", "1:2", "--hidden-weight", "1"], "points past the last layer", 2),
        (["--teacher", str(teacher_dir), "--layer-map", "1:1"], "--layer-map needs --hidden-weight", 2),
        (["--teacher", str(teacher_dir), "--layer-map", "1"], "STUDENT:TEACHER", 2),
        (["--teacher", str(teacher_dir), "--completions", "greedy"], "needs a task of prompts and completions", 2),
    ]
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    failures.append((["--teacher", str(tmp_path / "corrupt.npz")], "cannot be read", 1))
    for args, message, code in failures:
        fresh = tmp_path / "never"
        assert main(["distill", *args, "--steps", "2", "--out", str(fresh), "--quiet"]) == code, args
        assert message in capsys.readouterr().err, args
        assert not fresh.exists(), args  # nothing written half-way


def test_demo_fast(tmp_path, capsys):
    assert main(["demo", "--fast", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "CE-only" in printed and "KL to the true distribution" in printed
    report = json.load(open(tmp_path / "report.json"))
    assert set(report["students"]) == {"ce", "kd"}
    for name in ("val_loss.png", "kl_to_true.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(tmp_path / name) > 5000


def test_cli_sweep_writes_one_row_per_setting(tmp_path, capsys, teacher):
    teacher_dir = tmp_path / "teacher"
    checkpoint.save(str(teacher_dir / "checkpoint.npz"), teacher, step=10, task="grammar")
    out = tmp_path / "sweep"
    assert main(["sweep", "--teacher", str(teacher_dir), "--lam", "0,1", "--T", "1,3", "--steps", "3",
                 "--eval-every", "3", "--batch-size", "4", "--student-preset", "tiny", "--out", str(out),
                 "--quiet"]) == 0
    with open(out / "results.csv") as f:
        header, *rows = [line.strip().split(",") for line in f]
    assert header[:2] == ["lam", "T"] and len(rows) == 4
    column = header.index("val_loss")
    assert rows[0][column] == rows[1][column]  # at λ = 0 the temperature has no effect
    assert main(["sweep", "--teacher", str(teacher_dir), "--lam", "0,2", "--out", str(tmp_path / "bad"),
                 "--quiet"]) == 2
    assert "lam must be in" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
