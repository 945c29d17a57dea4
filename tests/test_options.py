"""Every option of every workflow changes the result in the stated way, and every reported metric
equals its definition: the CLI flags reach the run (read back from the files it writes), and each
config field does what its comment says, against an expected value computed independently.
"""

import csv
import json
import math
import re
import time

import numpy as np
import pytest
from reference import arr, assert_same_params, distillation_loss, greedy_np, params

from minikd import backend
from minikd import functional as F
from minikd.nn import schedules
from minikd.nn.model import PRESETS, TransformerLM, preset
from minikd.recipes import checkpoint, launch, weak_to_strong
from minikd.recipes.distill import DistillConfig, Distiller, corrupt_labels
from minikd.recipes.hidden import HiddenDistiller
from minikd.recipes.sequence import OnPolicyDistiller
from minikd.recipes.teacher import load_setting, new_student
from minikd.recipes.train import TrainConfig, cross_entropy_loss, evaluate, train, unigram_loss
from minikd.tasks import data
from minikd.tools.cli import main
from minikd.tools.evaluate import evaluate_run
from minikd.tools.generate import generate

IGNORE = data.IGNORE_INDEX


def host(a):
    return backend.to_numpy(a)


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def grammar_teacher_dir(tmp_path_factory, grammar_teacher):
    folder = tmp_path_factory.mktemp("grammar_teacher")
    checkpoint.save(str(folder / "checkpoint.npz"), grammar_teacher, step=20, task="grammar",
                    train_config={"seed": 0})
    return str(folder)


@pytest.fixture(scope="module")
def letters(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "letters.txt"
    path.write_text("".join(np.random.default_rng(1).choice(list("abcdefgh \n"), 4000)), encoding="utf-8")
    return str(path)


# --- minikd train ---------------------------------------------------------------------------------------

def test_train_flags_reach_the_run_and_resume_continues_it(tmp_path, letters):
    """Every ``minikd train`` flag, set away from its default, is read back from the run folder:
    the training config and the model (preset, dropout, seed) in the checkpoint, the evaluation steps
    in metrics.jsonl; --resume of the finished run is refused and changes nothing."""
    out = tmp_path / "run"
    flags = ["train", "--task", "text", "--data", letters, "--preset", "tiny", "--steps", "3", "--batch-size", "5",
             "--lr", "0.01", "--eval-every", "2", "--seed", "4", "--optimizer", "sgd", "--dropout", "0.1",
             "--out", str(out), "--quiet"]
    assert main(flags) == 0
    ckpt = checkpoint.load(str(out / "checkpoint.npz"))
    assert {k: ckpt.meta["train_config"][k] for k in ("steps", "batch_size", "lr", "eval_every", "seed", "optimizer")} \
        == {"steps": 3, "batch_size": 5, "lr": 0.01, "eval_every": 2, "seed": 4, "optimizer": "sgd"}
    config = ckpt.config
    assert (config.n_layer, config.n_head, config.n_embd) == tuple(PRESETS["tiny"][k] for k in ("n_layer", "n_head", "n_embd"))
    assert config.dropout == 0.1 and ckpt.meta["model_seed"] == 4 and ckpt.meta["task"] == "text"
    assert [r["step"] for r in jsonl(out / "metrics.jsonl")] == [0, 2, 3]
    summary = json.load(open(out / "summary.json"))
    assert summary["preset"] == "tiny" and summary["steps"] == 3
    assert summary["val_loss"] == jsonl(out / "metrics.jsonl")[-1]["val_loss"]  # the summary is the final record
    more_steps = [*flags[:flags.index("--steps") + 1], "5", *flags[flags.index("--steps") + 2:], "--resume"]
    assert main(more_steps) == 1  # finished (and a different --steps would change the schedule): refused
    assert main([*flags, "--resume"]) == 1  # the same run, finished: nothing to continue, nothing changed
    assert [r["step"] for r in jsonl(out / "metrics.jsonl")] == [0, 2, 3]
    assert checkpoint.load(str(out / "checkpoint.npz")).step == 3


def test_summary_unigram_loss_is_the_smoothed_training_frequencies_on_validation_targets(grammar_task):
    """unigram_loss = mean over validation targets of −log((count_train(y) + 1) / (N + V))."""
    _, y_train = grammar_task.eval_set("train", 300)
    _, y_val = grammar_task.eval_set("val", 300)
    V = grammar_task.tokenizer.vocab_size
    counts = np.bincount(host(y_train).ravel(), minlength=V) + 1.0
    expected = -np.log(counts / counts.sum())[host(y_val).ravel()].mean()
    assert unigram_loss(grammar_task, n_windows=300) == pytest.approx(expected, rel=1e-6)


def test_unigram_loss_smooths_over_the_whole_vocabulary(tmp_path):
    """Add-one smoothing counts every vocabulary id, also one the training targets never hold: here the
    last id ('z') occurs only in the validation tail, so it gets probability 1/(N + V)."""
    path = tmp_path / "tail.txt"
    path.write_text("abcab" * 36 + "zz", encoding="utf-8")  # 182 characters; validation: the last 18
    task = data.load_task("text", data=str(path), block_size=4)
    assert task.tokenizer.vocab_size == 4 and "z" not in task.tokenizer.decode(task.splits["train"][0])
    _, y_train = task.eval_set("train", 2048)
    _, y_val = task.eval_set("val", 2048)
    counts = np.bincount(host(y_train).ravel(), minlength=4) + 1.0
    assert counts[3] == 1.0
    expected = -np.log(counts / counts.sum())[host(y_val).ravel()].mean()
    assert unigram_loss(task) == pytest.approx(expected, rel=1e-6)


# --- TrainConfig, through train() -------------------------------------------------------------------------

class Spy:
    """A loss function that records what ``train`` hands it and what it returned."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, x, y, step):
        loss = cross_entropy_loss(model, x, y, step)
        self.calls.append((step, host(x), loss.item()))
        return loss


def test_learning_rate_warms_up_to_lr_then_decays_to_a_tenth_of_it():
    """``lr`` is the peak after a linear warm-up of ``warmup`` steps; a cosine brings it down to lr / 10
    at ``steps``, never rising."""
    lr_at = TrainConfig(steps=20, lr=0.02, warmup=4).lr_schedule()
    assert [lr_at(t) for t in range(4)] == pytest.approx([0.005, 0.01, 0.015, 0.02])
    decay = [lr_at(t) for t in range(4, 21)]
    assert decay[0] == pytest.approx(0.02) and decay[-1] == pytest.approx(0.002)
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_train_config_steps_batches_evaluations_and_logged_numbers(grammar_task):
    """``steps`` losses on batches of ``batch_size`` rows, step t's batch being task.batch(seed, t);
    a record every ``eval_every`` steps and at the end; its train_loss is the mean of the losses since
    the previous record, its lr the rate of the last step, its val_loss is ``evaluate`` on
    ``eval_windows`` windows of the model at that point and its elapsed_s the time since the start;
    ``log(step, record)`` receives each record as it is made."""
    config = TrainConfig(steps=7, batch_size=3, eval_every=3, eval_windows=5, warmup=2, seed=6)
    model, spy, logged = TransformerLM(preset("tiny", grammar_task.tokenizer.vocab_size, 12), seed=0), Spy(), []
    start = time.perf_counter()
    history = train(model, grammar_task, config, loss_fn=spy, progress=False,
                    log=lambda step, record: logged.append((step, record)))
    wall = time.perf_counter() - start
    assert logged == [(record["step"], record) for record in history]  # log(step, record) after each evaluation
    assert [step for step, _, _ in spy.calls] == list(range(7))
    for step, x, _ in spy.calls:
        np.testing.assert_array_equal(x, host(grammar_task.batch("train", 3, seed=6, step=step)[0]))
    assert [r["step"] for r in history] == [0, 3, 6, 7]
    losses = [loss for _, _, loss in spy.calls]
    assert history[0]["train_loss"] is None
    for record, window in zip(history[1:], (losses[0:3], losses[3:6], losses[6:7])):
        assert record["train_loss"] == pytest.approx(np.mean(window), rel=1e-6)
    lr_at = config.lr_schedule()
    assert [r["lr"] for r in history] == pytest.approx([lr_at(0), lr_at(2), lr_at(5), lr_at(6)])
    assert history[-1]["val_loss"] == evaluate(model, grammar_task, 5)["val_loss"]
    assert history[-1]["val_loss"] != evaluate(model, grammar_task, 256)["val_loss"]
    assert 0 <= history[1]["elapsed_s"] <= history[-1]["elapsed_s"] <= wall


def test_make_optimizer_builds_the_named_optimizer_over_every_module():
    """``adamw``: AdamW(lr, β = (0.9, 0.95), weight_decay); ``sgd``: SGD(lr) with momentum 0.9; both over
    the parameters of the model and of every extra module, in order."""
    model, extra = (TransformerLM(preset("tiny", 7, 4), seed=s) for s in (0, 1))
    adamw = TrainConfig(lr=0.02, weight_decay=0.3).make_optimizer(model, extra)
    assert (adamw.lr, adamw.beta1, adamw.beta2, adamw.weight_decay) == (0.02, 0.9, 0.95, 0.3)
    assert [id(p) for p in adamw.params] == [id(p) for p in [*model.parameters(), *extra.parameters()]]
    sgd = TrainConfig(lr=0.5, optimizer="sgd").make_optimizer(model)
    assert (type(sgd).__name__, sgd.lr, sgd.momentum) == ("SGD", 0.5, 0.9)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "batch_size must be a positive integer, got 0"),
    ("warmup", -1, "warmup must be an integer >= 0, got -1"),
    ("seed", True, "seed must be an integer >= 0, got True"),
    ("lr", 0.0, "lr must be a finite number > 0, got lr=0.0"),
    ("weight_decay", float("inf"), "weight_decay must be a finite number >= 0, got weight_decay=inf"),
    ("seed", -1, "seed must be an integer >= 0, got -1"),
    ("grad_clip", -0.5, "grad_clip must be a finite number >= 0, got grad_clip=-0.5"),
    ("grad_clip", True, "grad_clip must be a finite number >= 0, got grad_clip=True"),
    ("optimizer", "adam", "optimizer must be one of 'adamw', 'sgd'; got optimizer='adam'"),
])
def test_train_config_names_the_field_and_value_it_refuses(field, value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TrainConfig(**{field: value})


def test_train_config_accepts_the_edges_of_its_ranges():
    """warmup, seed, weight_decay and grad_clip may be 0; any lr > 0 (also 1); NumPy numbers become Python's."""
    config = TrainConfig(warmup=0, seed=np.int64(0), weight_decay=0, grad_clip=0, lr=1)
    assert (config.warmup, config.seed, config.weight_decay, config.grad_clip, config.lr) == (0, 0, 0.0, 0.0, 1.0)
    assert type(config.seed) is int and type(config.lr) is float


def test_evaluate_by_default_uses_the_windows_training_reports(grammar_task):
    """``evaluate(model, task)`` scores the ``TrainConfig.eval_windows`` windows a training record uses
    (the grammar task here has more, so another count would give another loss)."""
    model = TransformerLM(preset("tiny", grammar_task.tokenizer.vocab_size, 12), seed=0)
    assert grammar_task.num_windows("val") > TrainConfig.eval_windows + 1
    assert evaluate(model, grammar_task) == evaluate(model, grammar_task, TrainConfig.eval_windows)
    assert evaluate(model, grammar_task)["val_loss"] != evaluate(model, grammar_task, 300)["val_loss"]


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_one_adamw_step_follows_its_formula(grammar_task, weight_decay):
    """The default optimizer's first step, unclipped: θ' = θ·(1 − lr·wd·[θ a matrix]) − lr·g/(|g| + ε)
    (at t = 1, m̂ = g and √v̂ = |g|). Catches ``weight_decay`` or the optimizer choice being ignored."""
    config = TrainConfig(steps=1, batch_size=6, lr=0.01, warmup=0, weight_decay=weight_decay, grad_clip=0.0,
                         eval_every=1, eval_windows=2, seed=1)
    make = lambda: TransformerLM(preset("tiny", grammar_task.tokenizer.vocab_size, 12), seed=2)  # noqa: E731
    model, manual = make(), make()
    x, y = grammar_task.batch("train", 6, seed=1, step=0)
    F.cross_entropy(manual(x), y, ignore_index=IGNORE).backward()
    before, lr = params(model), config.lr_schedule()(0)
    train(model, grammar_task, config, progress=False)
    after = params(model)
    for name, p in manual.named_parameters():
        g = host(p.grad).astype(np.float64)
        decay = 1.0 - lr * weight_decay if g.ndim >= 2 else 1.0
        expected = before[name] * decay - lr * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(after[name], expected, rtol=1e-4, atol=2e-6, err_msg=name)


# --- DistillConfig: the objective of each step ------------------------------------------------------------

@pytest.fixture(scope="module")
def batch(grammar_task, grammar_teacher):
    x, y = grammar_task.batch("train", 4, seed=0, step=0)
    y = host(y).copy()
    y[:, ::3] = IGNORE  # some ignored positions
    student = TransformerLM(preset("tiny", grammar_task.tokenizer.vocab_size, 12), seed=1).eval()
    return x, arr(y), student, host(grammar_teacher(x).data)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("form", ["interpolate", "additive"])
def test_distiller_objective_is_the_configured_loss(batch, grammar_teacher, divergence, form):
    """Distiller's loss is the objective of its config (λ, T, divergence, form, β), as composed from
    primitive ops in tests/reference.py."""
    x, y, student, v = batch
    config = DistillConfig(lam=0.3, T=2.5, divergence=divergence, form=form, beta=0.3)
    got = Distiller(grammar_teacher, config, 4)(student, x, y, 0).item()
    expected = distillation_loss(student(x), arr(v), y, lam=0.3, T=2.5, divergence=divergence, beta=0.3, form=form)
    assert got == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["linear", "cosine", "step"])
def test_schedules_set_lambda_and_T_of_each_step(batch, grammar_teacher, kind):
    """At step t the loss uses λ(t) and T(t) of the configured schedules, and describe(t) reports them."""
    x, y, student, v = batch
    config = DistillConfig(lam=0.9, lam_end=0.1, lam_schedule=kind, T=4.0, T_end=1.0, T_schedule=kind)
    distiller = Distiller(grammar_teacher, config, 10)
    for step in (0, 3, 9):
        lam, T = schedules.make(kind, 0.9, 0.1, 10)(step), schedules.make(kind, 4.0, 1.0, 10)(step)
        assert distiller.describe(step) == {"lam": pytest.approx(lam), "T": pytest.approx(T)}
        expected = distillation_loss(student(x), arr(v), y, lam=lam, T=T).item()
        assert distiller(student, x, y, step).item() == pytest.approx(expected, rel=1e-5)
    assert distiller.describe(3) != distiller.describe(0)


def test_label_noise_corrupts_the_labels_of_the_cross_entropy_term(batch, grammar_teacher, grammar_task):
    """``label_noise`` = f: the objective on labels where each scored one is redrawn with probability f
    (seeded by the run's seed and the step); about f·(1 − 1/V) of them change."""
    x, y, student, v = batch
    V = grammar_task.tokenizer.vocab_size
    noisy = corrupt_labels(y, 0.5, V, seed=3, step=2)
    scored = host(y) != IGNORE
    changed = (host(noisy) != host(y))[scored].mean()
    assert abs(changed - 0.5 * (1 - 1 / V)) < 4 * math.sqrt(0.25 / scored.sum())
    distiller = Distiller(grammar_teacher, DistillConfig(lam=0.2, label_noise=0.5), 4, seed=3)
    expected = distillation_loss(student(x), arr(v), noisy, lam=0.2, T=2.0).item()
    assert distiller(student, x, y, 2).item() == pytest.approx(expected, rel=1e-5)
    clean = distillation_loss(student(x), arr(v), y, lam=0.2, T=2.0).item()
    assert distiller(student, x, y, 2).item() != pytest.approx(clean, rel=1e-3)


def test_teacher_bias_adds_its_bonus_where_the_context_token_is(batch, grammar_teacher, grammar_task):
    """``teacher_bias`` = (c, w, b): the teacher's logit of w is raised by b wherever the input token is c."""
    x, y, student, v = batch
    ids = grammar_task.tokenizer.ids
    context, wrong = ids["the"], ids["cats"]
    assert (host(x) == context).any()
    biased = v.copy()
    biased[..., wrong] += 4.0 * (host(x) == context)
    distiller = Distiller(grammar_teacher, DistillConfig(lam=1.0, teacher_bias=(context, wrong, 4.0)), 4)
    expected = distillation_loss(student(x), arr(biased), y, lam=1.0, T=2.0).item()
    assert distiller(student, x, y, 0).item() == pytest.approx(expected, rel=1e-5)


# --- minikd distill and sweep ------------------------------------------------------------------------------

def test_distill_flags_reach_the_run(tmp_path, grammar_teacher_dir, grammar_teacher):
    """Every ``minikd distill`` flag of a token-level and hidden-state run, set away from its default, is
    read back from distill_config.json, schedule.jsonl and the student's checkpoint."""
    out = tmp_path / "student"
    assert main(["distill", "--teacher", grammar_teacher_dir, "--student-preset", "tiny", "--divergence", "jsd",
                 "--form", "additive", "--label-noise", "0.1", "--teacher-bias", "the,cats,2", "--train-tokens", "5000",
                 "--lam", "0.3", "--lam-end", "0.1", "--schedule", "linear", "--T", "3", "--T-end", "1.5",
                 "--T-schedule", "cosine", "--hidden-weight", "0.2", "--layer-map", "0:0,1:1", "--steps", "2",
                 "--batch-size", "3", "--lr", "0.002", "--eval-every", "1", "--seed", "5", "--out", str(out),
                 "--quiet"]) == 0
    saved = json.load(open(out / "distill_config.json"))
    _, _, task = load_setting(grammar_teacher_dir)
    expected = {"divergence": "jsd", "form": "additive", "label_noise": 0.1, "lam": 0.3, "lam_end": 0.1,
                "lam_schedule": "linear", "T": 3.0, "T_end": 1.5, "T_schedule": "cosine", "hidden_weight": 0.2,
                "layer_map": [[0, 0], [1, 1]], "completions": None, "on_policy": 0.0,
                "teacher_bias": [task.tokenizer.ids["the"], task.tokenizer.ids["cats"], 2.0]}
    assert {k: saved[k] for k in expected} == expected
    schedule = jsonl(out / "schedule.jsonl")
    assert [r["lam"] for r in schedule] == pytest.approx([schedules.Linear(0.3, 0.1, 2)(t) for t in (0, 1)])
    assert [r["T"] for r in schedule] == pytest.approx([schedules.Cosine(3.0, 1.5, 2)(t) for t in (0, 1)])
    assert all(r["mu"] == 0.2 for r in schedule)
    ckpt = checkpoint.load(str(out / "checkpoint.npz"))
    assert {k: ckpt.meta["train_config"][k] for k in ("steps", "batch_size", "lr", "eval_every", "seed")} == \
        {"steps": 2, "batch_size": 3, "lr": 0.002, "eval_every": 1, "seed": 5}
    assert ckpt.config.n_embd == PRESETS["tiny"]["n_embd"] and ckpt.meta["model_seed"] == 5
    assert [r["step"] for r in jsonl(out / "metrics.jsonl")] == [0, 1, 2]


def test_train_tokens_sets_the_size_of_the_students_grammar_corpus(grammar_teacher_dir):
    """--train-tokens N: the training corpus holds N tokens, rounded up to whole streams of 1000."""
    for n in (3_000, 7_500):
        _, _, task = load_setting(grammar_teacher_dir, train_tokens=n)
        assert task.splits["train"].size == 1000 * math.ceil(n / 1000)


def test_sweep_rows_are_the_grid_and_lambda_zero_is_cross_entropy(tmp_path, grammar_teacher_dir, grammar_teacher):
    """``minikd sweep --lam 0,1 --T 2``: one row per (λ, T) with its settings; the λ = 0 row's numbers are
    those of a student trained with cross-entropy alone (same data, steps and seed)."""
    out = tmp_path / "sweep"
    assert main(["sweep", "--teacher", grammar_teacher_dir, "--student-preset", "tiny", "--lam", "0,1", "--T", "2",
                 "--divergence", "reverse_kl", "--train-tokens", "5000", "--steps", "2", "--batch-size", "3",
                 "--eval-every", "2", "--seed", "1", "--out", str(out), "--quiet"]) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["lam"]), float(r["T"]), r["divergence"], r["steps"], r["seed"]) for r in rows] == \
        [(0.0, 2.0, "reverse_kl", "2", "1"), (1.0, 2.0, "reverse_kl", "2", "1")]
    _, teacher, task = load_setting(grammar_teacher_dir, seed=1, train_tokens=5000)
    ce = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=1)
    final = train(ce, task, TrainConfig(steps=2, batch_size=3, eval_every=2, seed=1), progress=False,
                  teacher=teacher)[-1]
    assert float(rows[0]["val_loss"]) == pytest.approx(final["val_loss"], rel=1e-6)
    assert float(rows[0]["kl_to_teacher"]) == pytest.approx(final["kl_to_teacher"], rel=1e-6)
    assert float(rows[1]["val_loss"]) != pytest.approx(final["val_loss"], rel=1e-6)


def test_each_sweep_row_is_the_student_distilled_with_its_own_setting(tmp_path, grammar_teacher_dir):
    """``minikd sweep --lam 0.5 --T 1,4`` with a label noise and a teacher bias: each row's numbers are those
    of a student distilled directly with DistillConfig(λ, T of that row, the noise, the bias)."""
    out = tmp_path / "sweep"
    assert main(["sweep", "--teacher", grammar_teacher_dir, "--student-preset", "tiny", "--lam", "0.5", "--T", "1,4",
                 "--label-noise", "0.3", "--teacher-bias", "the,cats,4", "--form", "additive", "--train-tokens", "5000",
                 "--steps", "2", "--batch-size", "3", "--eval-every", "2", "--seed", "1", "--out", str(out),
                 "--quiet"]) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["lam"]), float(r["T"]), r["form"]) for r in rows] == [(0.5, 1.0, "additive"), (0.5, 4.0, "additive")]
    _, teacher, task = load_setting(grammar_teacher_dir, seed=1, train_tokens=5000)
    bias = (task.tokenizer.ids["the"], task.tokenizer.ids["cats"], 4.0)
    config = TrainConfig(steps=2, batch_size=3, eval_every=2, seed=1)
    for row, T in zip(rows, (1.0, 4.0)):
        student = new_student("tiny", task, teacher, 1)
        kd = DistillConfig(lam=0.5, T=T, form="additive", label_noise=0.3, teacher_bias=bias)
        final = train(student, task, config, loss_fn=Distiller(teacher, kd, 2, seed=1), progress=False,
                      teacher=teacher)[-1]
        assert float(row["val_loss"]) == pytest.approx(final["val_loss"], rel=1e-6), T
    assert rows[0]["val_loss"] != rows[1]["val_loss"]
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["temperatures"] == [1.0, 4.0] and settings["base"]["teacher_bias"] == list(bias)


def test_sweep_flags_resume_and_overwrite_reach_the_run_folder(tmp_path, grammar_teacher_dir, capsys):
    """A second ``minikd sweep`` into a finished folder is refused; ``--resume`` says there is nothing to
    continue; ``--overwrite`` runs it again, to the same rows."""
    out = tmp_path / "sweep"
    args = ["sweep", "--teacher", grammar_teacher_dir, "--student-preset", "tiny", "--lam", "0,1", "--T", "2",
            "--train-tokens", "5000", "--steps", "2", "--batch-size", "3", "--eval-every", "2", "--out", str(out),
            "--quiet"]
    assert main(args) == 0
    first = (out / "results.csv").read_text()
    capsys.readouterr()
    assert main(args) == 1 and "already holds a finished 'minikd sweep' run" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 1 and "is finished; nothing to continue" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0 and (out / "results.csv").read_text() == first


# --- minikd weak-to-strong ---------------------------------------------------------------------------------

def test_weak_to_strong_flags_reach_the_config(monkeypatch, tmp_path):
    """Every ``minikd weak-to-strong`` flag, set away from its default, reaches the run's config."""
    seen = {}
    monkeypatch.setattr(weak_to_strong, "run", lambda config, out, **kwargs: seen.update(config=config, out=out, **kwargs))
    assert main(["weak-to-strong", "--weak-preset", "tiny", "--weak-steps", "3", "--strong-preset", "small",
                 "--steps", "4", "--n-verified", "7", "--verified-batch", "2", "--lam", "0.2", "--T", "1.5",
                 "--alpha-max", "0.3", "--alpha-warmup", "0.1", "--batch-size", "9", "--seed", "8",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert seen["config"] == weak_to_strong.WeakToStrongConfig(
        weak_preset="tiny", weak_steps=3, strong_preset="small", steps=4, n_verified=7, verified_batch=2, lam=0.2,
        T=1.5, alpha_max=0.3, alpha_warmup=0.1)
    assert (seen["out"], seen["seed"], seen["batch_size"], seen["progress"]) == (str(tmp_path), 8, 9, False)
    assert (seen["resume"], seen["overwrite"]) == (False, False)
    for flag in ("--resume", "--overwrite"):
        assert main(["weak-to-strong", flag, "--out", str(tmp_path)]) == 0
        assert (seen["resume"], seen["overwrite"], seen["progress"]) == (flag == "--resume", flag == "--overwrite", True)


def test_weak_to_strong_experiment_sizes_and_its_metrics(addition_task):
    """weak_steps and steps are the trainings' lengths; the verified set is the first n_verified training
    problems, the weak teacher labels the rest; weak_label_accuracy is the fraction of its labels that
    equal the truth; PGR is (student − weak)/(ceiling − weak) on exact-match accuracy."""
    config = weak_to_strong.WeakToStrongConfig(weak_preset="tiny", weak_steps=3, strong_preset="tiny", steps=2,
                                               n_verified=30, verified_batch=2)
    experiment = weak_to_strong.Experiment(config, addition_task, batch_size=6, progress=False)
    weak = experiment.weak()
    experiment.ceiling()
    experiment.student()
    assert experiment.results["weak"]["step"] == 3 and experiment.results["ceiling"]["step"] == 2
    assert experiment.results["student"]["step"] == 2
    examples = addition_task.examples["train"]
    np.testing.assert_array_equal(experiment.verified.examples["train"], examples[:30])
    labels = experiment.weak_labelled.examples["train"]
    P = addition_task.prompt_length
    np.testing.assert_array_equal(labels, greedy_np(weak, examples[30:, :P], addition_task.digits + 1))
    assert experiment.weak_label_accuracy == pytest.approx((labels == examples[30:]).all(axis=1).mean())
    accuracy = {name: experiment.accuracy(name) for name in ("weak", "ceiling", "student")}
    if accuracy["ceiling"] == accuracy["weak"]:
        assert experiment.pgr("student") is None
    else:
        assert experiment.pgr("student") == pytest.approx(
            (accuracy["student"] - accuracy["weak"]) / (accuracy["ceiling"] - accuracy["weak"]))


# --- minikd generate and eval ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def addition_run(tmp_path_factory, addition_teacher):
    folder = tmp_path_factory.mktemp("addition_run")
    checkpoint.save(str(folder / "checkpoint.npz"), addition_teacher, step=40, task="addition")
    return str(folder)


def test_generate_options(addition_run, addition_teacher, capsys):
    """``generate``: --samples rows, each the --prompt followed by --max-new-tokens tokens; sampling as
    ``model.generate`` with --temperature, --top-k and --seed; --greedy is the argmax completion."""
    _, _, task = load_setting(addition_run)
    prompt = "12+34="
    ids = task.tokenizer.encode(prompt)
    texts = generate(addition_run, prompt, max_new_tokens=5, temperature=0.7, top_k=4, seed=3, samples=3)
    rows = addition_teacher.generate(arr([ids] * 3), 5, temperature=0.7, top_k=4, seed=3)
    assert texts == [task.tokenizer.decode(row) for row in host(rows)]
    assert all(text.startswith(prompt) and len(text) == len(ids) + 5 for text in texts)
    assert texts != generate(addition_run, prompt, max_new_tokens=5, temperature=0.7, top_k=4, seed=4, samples=3)
    assert main(["generate", addition_run, "--prompt", prompt, "--max-new-tokens", "5", "--greedy", "--samples", "2",
                 "--temperature", "5"]) == 2  # two contradicting flags: refused
    capsys.readouterr()
    assert main(["generate", addition_run, "--prompt", prompt, "--max-new-tokens", "5", "--greedy", "--samples", "2"]) == 0
    greedy = task.tokenizer.decode(greedy_np(addition_teacher, np.array([ids]), 5)[0])
    assert capsys.readouterr().out.splitlines() == [greedy, greedy]
    assert main(["generate", addition_run, "--prompt", prompt, "--max-new-tokens", "5", "--temperature", "0.7",
                 "--top-k", "4", "--seed", "3", "--samples", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == texts


@pytest.mark.parametrize("split", ["val", "train"])
def test_eval_options(addition_run, addition_teacher, capsys, split):
    """``eval --windows N --split S --json``: ``evaluate`` of the run's model on N windows of split S."""
    _, _, task = load_setting(addition_run)
    direct = evaluate(addition_teacher, task, 24, split=split)
    assert main(["eval", addition_run, "--windows", "24", "--split", split, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"task": "addition", "split": split, "windows": 24, **direct}
    assert evaluate_run(addition_run, 24, split) == printed
    other = evaluate(addition_teacher, task, 24, split="train" if split == "val" else "val")
    assert other["val_loss"] != direct["val_loss"]
    assert main(["eval", addition_run, "--windows", "24", "--split", split]) == 0
    assert f"{direct['val_loss']:.4f}" in capsys.readouterr().out


def test_eval_reports_the_number_of_problems_it_scored(addition_run):
    """Asked for more windows than the split holds, ``eval`` scores the whole split and says how many."""
    assert evaluate_run(addition_run, 5000)["windows"] == len(data.AdditionTask(seed=0).examples["val"])


# --- minikd distill: the kind of distillation the flags choose ---------------------------------------------

def test_hidden_weight_and_layer_map_add_hidden_state_distillation(tmp_path, grammar_teacher_dir):
    """``--hidden-weight μ --layer-map 0:0,1:1`` (launch.run): the student and its projections equal those
    trained with HiddenDistiller(μ, that map) beside the student. Catches either flag being ignored."""
    config, train_config = DistillConfig(lam=0.4), TrainConfig(steps=2, batch_size=4, eval_every=2, eval_windows=4,
                                                              seed=2)
    student, _ = launch.run(grammar_teacher_dir, config, train_config, str(tmp_path / "run"), student_preset="tiny",
                            train_tokens=5000, hidden_weight=0.6, layer_map=((0, 0), (1, 1)), progress=False,
                            out_fn=lambda line: None)
    _, teacher, task = load_setting(grammar_teacher_dir, seed=2, train_tokens=5000)
    reference = new_student("tiny", task, teacher, 2)
    hidden = HiddenDistiller(teacher, reference, config, 2, mu=0.6, layer_map=((0, 0), (1, 1)), seed=2)
    train(reference, task, train_config, loss_fn=hidden, extra=hidden.projections, progress=False)
    assert_same_params(student, reference)
    plain = new_student("tiny", task, teacher, 2)
    train(plain, task, train_config, loss_fn=Distiller(teacher, config, 2, seed=2), progress=False)
    assert params(plain)["wte.weight"].tolist() != params(student)["wte.weight"].tolist()


def test_on_policy_option_learns_on_the_students_samples(tmp_path, monkeypatch, addition_teacher):
    """``--on-policy p`` (launch.run): the student equals one trained with OnPolicyDistiller(p, T = the
    config's T, the run's seed) around the token-level objective. Catches the flag or its T ignored."""
    load_task = data.load_task
    monkeypatch.setattr(data, "load_task", lambda name, seed=0, **kw: load_task(
        name, seed=seed, **({"train_examples": 400, "val_examples": 40} if name == "addition" else kw)))
    folder = tmp_path / "teacher"
    checkpoint.save(str(folder / "checkpoint.npz"), addition_teacher, step=40, task="addition")
    config, train_config = DistillConfig(lam=0.5, T=3.0), TrainConfig(steps=3, batch_size=4, eval_every=3,
                                                                     eval_windows=4, seed=1)
    student, _ = launch.run(str(folder), config, train_config, str(tmp_path / "run"), student_preset="tiny",
                            on_policy=0.6, progress=False, out_fn=lambda line: None)
    task = data.load_task("addition", seed=1)
    reference = new_student("tiny", task, addition_teacher, 1)
    loss = OnPolicyDistiller(addition_teacher, task, 0.6, Distiller(addition_teacher, config, 3, seed=1), T=3.0, seed=1)
    assert any(loss.on_policy(t) for t in range(3)) and not all(loss.on_policy(t) for t in range(3))
    train(reference, task, train_config, loss_fn=loss, progress=False)
    assert_same_params(student, reference)
