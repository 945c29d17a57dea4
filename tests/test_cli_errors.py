"""Nothing lost, no tracebacks: run folders, locks, exact resume, faults, and one-line errors.

Every size is tiny: a text task of a few thousand characters, the ``tiny`` preset, a handful of steps.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import pytest
from reference import arr, tensor

from minikd import functional as F
from minikd import backend
from minikd.nn.model import ModelConfig, TransformerLM, preset
from minikd.recipes import checkpoint, launch, run_folder, train as train_recipe
from minikd.recipes.distill import DistillConfig
from minikd.recipes.train import TrainConfig
from minikd.tasks import data
from minikd.tools.cli import main

CONFIG = TrainConfig(steps=24, batch_size=4, eval_every=4, eval_windows=4, warmup=2, seed=3)
SWEEP = TrainConfig(steps=4, batch_size=4, eval_every=4, eval_windows=4, warmup=1, seed=3)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    rng = random.Random(0)
    path.write_text("".join(rng.choice("abcdefg \n") for _ in range(1500)), encoding="utf-8")
    return str(path)


def train_run(text_file, out, **kwargs):
    return train_recipe.run("text", "tiny", CONFIG, str(out), data=text_file, progress=False,
                            out_fn=lambda *a: None, **kwargs)


@pytest.fixture(scope="module")
def teacher_dir(text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train_run(text_file, out)
    return str(out)


def distill_run(teacher_dir, text_file, out, **kwargs):
    return launch.run(teacher_dir, DistillConfig(lam=0.5, T=2.0), CONFIG, str(out), data=text_file,
                      student_preset="tiny", progress=False, out_fn=lambda *a: None, **kwargs)


@pytest.fixture(scope="module")
def grammar_teacher(tmp_path_factory):
    """An (untrained) tiny grammar teacher: sweeps run on the built-in tasks."""
    path = tmp_path_factory.mktemp("grammar") / "teacher" / "checkpoint.npz"
    checkpoint.save(str(path), TransformerLM(preset("tiny", 60, 32), seed=0), step=1, task="grammar")
    return str(path.parent)


def sweep_run(teacher_dir, out, **kwargs):
    return launch.sweep(teacher_dir, [0.0, 0.5, 1.0], [1.0, 2.0], DistillConfig(), SWEEP, str(out),
                        student_preset="tiny", train_tokens=2000, progress=False, out_fn=lambda *a: None, **kwargs)


def one_line_error(capsys, code, argv, *fragments):
    """``minikd argv`` exits with ``code`` and prints exactly one stderr line holding every fragment."""
    assert main(argv) == code, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"minikd {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])
    return err[0]


def same_checkpoints(a, b):
    ca, cb = checkpoint.load(os.path.join(a, "checkpoint.npz")), checkpoint.load(os.path.join(b, "checkpoint.npz"))
    assert ca.step == cb.step
    for part in ("model_state", "optimizer_state", "extra_state"):
        left, right = getattr(ca, part), getattr(cb, part)
        assert sorted(left) == sorted(right)
        for key in left:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"{part} {key}")


def records(out):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in train_recipe.read_metrics(str(out))]


# ---- a run folder belongs to one run ------------------------------------------------------------
def test_a_finished_run_is_never_overwritten_unasked(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    train_run(text_file, out)
    before = (out / "checkpoint.npz").read_bytes()
    args = ["train", "--task", "text", "--data", text_file, "--preset", "tiny", "--steps", "4", "--eval-every", "4",
            "--batch-size", "4", "--quiet", "--out", str(out)]
    one_line_error(capsys, 1, args, "already holds a finished 'minikd train' run", "--resume", "--overwrite")
    one_line_error(capsys, 1, [*args, "--resume"], "is finished")
    assert (out / "checkpoint.npz").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0  # said explicitly: replaced
    assert checkpoint.load(str(out / "checkpoint.npz")).step == 4
    one_line_error(capsys, 2, [*args, "--overwrite", "--resume"], "exclude each other")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    one_line_error(capsys, 1, [*args[:-1], str(foreign), "--overwrite"], "not a minikd run", "thesis.tex")
    assert (foreign / "thesis.tex").read_text() == "keep me"
    one_line_error(capsys, 1, [*args[:-1], str(foreign / "thesis.tex")], "is an existing file")
    one_line_error(capsys, 2, [*args[:-1], ""], "--out must name a folder")
    one_line_error(capsys, 1, [*args[:-1], "/proc/minikd-cannot-be-here"], "/proc/minikd-cannot-be-here")


def test_distill_out_never_overlaps_the_teacher(teacher_dir, text_file, capsys):
    before = open(os.path.join(teacher_dir, "checkpoint.npz"), "rb").read()
    base = ["distill", "--teacher", teacher_dir, "--data", text_file, "--student-preset", "tiny", "--steps", "2",
            "--quiet", "--overwrite"]
    for out, where in ((teacher_dir, "is"), (os.path.join(teacher_dir, "student"), "lies inside"),
                       (os.path.dirname(teacher_dir), "contains")):
        one_line_error(capsys, 1, [*base, "--out", out], f"{where} the folder of --teacher")
    assert open(os.path.join(teacher_dir, "checkpoint.npz"), "rb").read() == before
    assert sorted(os.listdir(teacher_dir)) == [".minikd.lock", "checkpoint.npz", "metrics.jsonl", "run.json",
                                               "summary.json"]


# ---- one writer at a time --------------------------------------------------------------------------
def test_a_second_process_gets_a_clear_error_naming_the_folder(tmp_path, capsys, text_file):
    out = str(tmp_path / "busy")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from minikd.recipes import run_folder\n"
         "with run_folder.claim(sys.argv[1], 'train', {}):\n    print('held', flush=True); sys.stdin.read()", out],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(run_folder.RunFolderError, match="is in use: another minikd process"):
            with run_folder.claim(out, "train", {}, resume=True):
                pass
        one_line_error(capsys, 1, ["train", "--task", "text", "--data", text_file, "--out", out, "--resume"],
                       repr(out), "in use")
    finally:
        holder.communicate("")  # let it finish: its lock dies with it
    assert holder.returncode == 0
    with run_folder.claim(out, "train", {}, overwrite=True):  # free again
        pass


# ---- resume is exact or refused --------------------------------------------------------------------
def test_resume_names_each_differing_setting_and_cleans_up(text_file, tmp_path, capsys):
    out = tmp_path / "run"

    def interrupt_at_13(model, x, y, step):
        if step == 13:
            raise KeyboardInterrupt
        return train_recipe.cross_entropy_loss(model, x, y, step)

    task = data.load_task("text", data=text_file)
    model = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=CONFIG.seed)
    settings = {"task": "text", "data": run_folder.file_identity(text_file), "preset": "tiny", "dropout": 0.0,
                "train_config": asdict(CONFIG)}
    with pytest.raises(KeyboardInterrupt), run_folder.claim(str(out), "train", settings):
        train_recipe.train(model, task, CONFIG, out=str(out), loss_fn=interrupt_at_13, progress=False)
    with open(out / "metrics.jsonl", "a") as f:  # a killed run's extra line, and half a line
        f.write(json.dumps({"step": 16, "val_loss": 9.0}) + "\n" + '{"step": 2')
    (out / ".checkpoint.npz.999.tmp").write_bytes(b"half a checkpoint")
    with pytest.raises(run_folder.RunFolderError,
                       match=r"train_config\.seed: was 3, now 4; train_config\.steps: was 24, now 30"):
        train_recipe.run("text", "tiny", TrainConfig(**{**asdict(CONFIG), "seed": 4, "steps": 30}), str(out),
                         data=text_file, resume=True, progress=False, out_fn=lambda *a: None)
    done = train_recipe.read_metrics(str(out), last_step=12)  # up to the checkpoint, with their times
    train_run(text_file, out, resume=True)
    assert train_recipe.read_metrics(str(out))[:len(done)] == done  # continued from step 12, not trained anew
    whole = tmp_path / "whole"
    train_run(text_file, whole)
    same_checkpoints(out, whole)
    assert records(out) == records(whole)  # the extra lines were cut back to the checkpoint's step
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


def test_resume_names_every_kind_of_changed_setting(text_file, tmp_path, monkeypatch):
    """Every setting a run folder records for ``train`` and ``weak-to-strong`` is named when a resume
    changes it (runs interrupted before their first step: nothing is trained here)."""
    from minikd.recipes import weak_to_strong as w2s

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_recipe, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(text_file, tmp_path / "train")
    with pytest.raises(run_folder.RunFolderError, match=r"data: was \{.*\}, now None; dropout: was 0.0, now 0.1; "
                                                        r"preset: was 'tiny', now 'small'; task: was 'text', now 'grammar'"):
        train_recipe.run("grammar", "small", CONFIG, str(tmp_path / "train"), dropout=0.1, resume=True,
                         progress=False, out_fn=lambda *a: None)
    seen = []

    def weak_interrupted(self):
        seen.append((self.task, self.out, self.progress, self.resume))
        raise KeyboardInterrupt

    monkeypatch.setattr(w2s.Experiment, "weak", weak_interrupted)
    task = data.AdditionTask(digits=1, train_examples=60, val_examples=20, seed=0)
    config = w2s.WeakToStrongConfig(weak_preset="tiny", strong_preset="tiny", n_verified=20, verified_batch=2)
    out = str(tmp_path / "w2s")
    with pytest.raises(KeyboardInterrupt):
        w2s.run(config, out, batch_size=8, task=task, progress=False)
    assert seen == [(task, out, False, False)]  # the experiment gets run()'s task, folder and progress
    with pytest.raises(run_folder.RunFolderError, match=r"batch_size: was 8, now 9; config.lam: was 0.5, now 0.2; "
                                                        r"seed: was 0, now 1; task: was 'addition', now None"):
        w2s.run(replace(config, lam=0.2), out, seed=1, batch_size=9, resume=True, progress=False)
    with pytest.raises(run_folder.RunFolderError, match="already holds an unfinished 'minikd weak-to-strong' run"):
        w2s.run(config, out, batch_size=8, task=task, progress=False)
    for kwargs in ({"resume": True}, {"overwrite": True}):  # continued or replaced, with bars by default
        with pytest.raises(KeyboardInterrupt):
            w2s.run(config, out, batch_size=8, task=task, **kwargs)
        assert seen[-1] == (task, out, True, kwargs.get("resume", False))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        w2s.run(config, batch_size=8, task=task)
    assert seen[-1][1] == "runs/weak_to_strong" and (tmp_path / "runs" / "weak_to_strong" / "run.json").exists()


def test_resuming_a_finished_training_only_loads_it(text_file, tmp_path):
    _, history, _ = train_run(text_file, tmp_path / "run")
    task = data.load_task("text", data=text_file)
    model = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=99)
    again = train_recipe.train(model, task, CONFIG, out=str(tmp_path / "run"), resume=True, progress=False)
    assert again == history  # the records read back, nothing trained
    np.testing.assert_array_equal(backend.to_numpy(model.wte.weight.data),
                                  checkpoint.load(str(tmp_path / "run" / "checkpoint.npz")).model_state["wte.weight"])


def test_resume_refuses_a_changed_input_file(tmp_path):
    teacher = tmp_path / "teacher.npz"
    teacher.write_bytes(b"one teacher")
    out = str(tmp_path / "run")
    settings = {"teacher": run_folder.file_identity(teacher)}
    with pytest.raises(KeyboardInterrupt), run_folder.claim(out, "distill", settings):
        raise KeyboardInterrupt
    teacher.write_bytes(b"another teacher")  # retrained in place
    with pytest.raises(run_folder.RunFolderError, match=r"teacher\.sha256: was '[0-9a-f]{64}', now '[0-9a-f]{64}'"):
        with run_folder.claim(out, "distill", {"teacher": run_folder.file_identity(teacher)}, resume=True):
            pass


# ---- fault injection: kill -9 at a random point, resume, compare with an uninterrupted run ---------
KILLED = """
import sys
sys.path.insert(0, {tests!r})
import test_cli_errors as t
kind, out, text_file, teacher = sys.argv[1:]
if kind == "train":
    t.train_run(text_file, out)
elif kind == "distill":
    t.distill_run(teacher, text_file, out)
else:
    t.sweep_run(teacher, out)
"""


def kill_at_random_point(kind, out, text_file, teacher, watch, seed):
    """Start the run in a child process and kill -9 it once ``watch`` has a random number of lines."""
    lines = random.Random(seed).randint(2, 4)
    child = subprocess.Popen([sys.executable, "-c", KILLED.format(tests=os.path.dirname(__file__)), kind, str(out),
                              text_file, teacher])
    path = os.path.join(out, watch)
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if os.path.exists(path) and sum(1 for _ in open(path)) >= lines:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    child.wait()
    return child.returncode


@pytest.mark.parametrize("kind", ["train", "distill", "sweep"])
def test_kill_9_then_resume_equals_an_uninterrupted_run(kind, teacher_dir, grammar_teacher, text_file, tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    teacher_dir = grammar_teacher if kind == "sweep" else teacher_dir
    watch = "results.csv" if kind == "sweep" else "metrics.jsonl"
    code = kill_at_random_point(kind, killed, text_file, teacher_dir, watch, seed=len(kind))
    assert code == -signal.SIGKILL, "the run finished before it could be killed: make it longer"
    run = {"train": lambda out, **kw: train_run(text_file, out, **kw),
           "distill": lambda out, **kw: distill_run(teacher_dir, text_file, out, **kw),
           "sweep": lambda out, **kw: sweep_run(teacher_dir, out, **kw)}[kind]
    with pytest.raises(run_folder.RunFolderError, match="already holds an unfinished"):
        run(killed)
    run(killed, resume=True)
    run(whole)
    if kind == "sweep":
        assert (killed / "results.csv").read_text() == (whole / "results.csv").read_text()  # no row lost or doubled
    else:
        same_checkpoints(killed, whole)
        assert records(killed) == records(whole)
    assert json.load(open(killed / "run.json"))["finished"]


def test_weak_to_strong_resumes_the_runs_it_had_not_finished(tmp_path, monkeypatch):
    from minikd.recipes import weak_to_strong as w2s
    from minikd.tasks.data import AdditionTask

    config = w2s.WeakToStrongConfig(weak_preset="tiny", strong_preset="tiny", weak_steps=6, steps=6, n_verified=20,
                                    verified_batch=2)

    def run(out, **kwargs):
        task = AdditionTask(digits=1, train_examples=60, val_examples=20, seed=0)
        return w2s.run(config, str(out), batch_size=8, task=task, progress=False, out_fn=lambda *a: None, **kwargs)

    student = w2s.Experiment.student

    def interrupted(self, name="student", **kwargs):
        if name == "student_confidence":  # the last of the four runs
            raise KeyboardInterrupt
        return student(self, name, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(w2s.Experiment, "student", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "killed")
    finished = {name: (tmp_path / "killed" / name / "metrics.jsonl").read_bytes() for name in ("weak", "ceiling", "student")}
    resumed, whole = run(tmp_path / "killed", resume=True), run(tmp_path / "whole")
    for name, logged in finished.items():  # the finished runs were loaded, not trained again
        assert (tmp_path / "killed" / name / "metrics.jsonl").read_bytes() == logged, name
    for key in ("accuracy", "weak_label_accuracy", "pgr"):
        assert resumed[key] == whole[key]
    assert all(records(tmp_path / "killed" / name) == records(tmp_path / "whole" / name) for name in whole["final"])


def default_sigint():
    """In the child before exec: SIGINT back to its default. A process started with SIGINT ignored (as
    pytest-xdist's workers are, and background jobs of a shell) passes that on, and Python then
    installs no KeyboardInterrupt handler: the run would never see the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_is_one_line_keeps_the_checkpoint_and_exits_130(text_file, tmp_path):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "minikd", "train", "--task", "text", "--data", text_file,
                              "--preset", "tiny", "--steps", "1000000", "--eval-every", "4", "--batch-size", "4",
                              "--quiet", "--out", str(out)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             text=True, preexec_fn=default_sigint)  # more steps than it can finish
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert child.poll() is None, "the run ended before it could be interrupted"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()  # never left running, whatever failed (a no-op once it has exited)
    assert child.returncode == 130
    assert err.strip().splitlines() == [f"minikd train: interrupted; {out} keeps its last checkpoint and finished "
                                        f"results: continue with --resume"]
    assert checkpoint.load(str(out / "checkpoint.npz")).step % 4 == 0


# ---- checkpoints and teachers are validated before use ---------------------------------------------
def crafted(tmp_path, name, change):
    """Save a tiny model's checkpoint, rewrite its members with ``change(arrays, meta)``, return the path."""
    model = TransformerLM(preset("tiny", 10, 8), seed=0)
    optimizer = TrainConfig().make_optimizer(model)
    path = str(tmp_path / "good.npz")
    checkpoint.save(path, model, optimizer, step=2, symbols=list("abcdefghij"))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    change(arrays, meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    bad = str(tmp_path / f"{name}.npz")
    np.savez(bad, **arrays)
    return bad


def config_with(**fields):
    def change(arrays, meta):
        config = json.loads(meta["config"])
        config.update(fields)
        meta["config"] = json.dumps({k: v for k, v in config.items() if v is not None})
    return change


CRAFTED = [
    ("missing_key", lambda a, m: a.pop("model/wte.weight"), "model state lacks ['wte.weight']"),
    ("extra_key", lambda a, m: a.update({"model/evil": np.zeros(3)}), "unexpected entries ['evil']"),
    ("shape", lambda a, m: a.update({"model/wte.weight": np.zeros((11, 32), np.float32)}), "has shape (11, 32)"),
    ("dtype", lambda a, m: a.update({"model/wte.weight": a["model/wte.weight"].astype(np.float64)}), "float64"),
    ("unknown_field", config_with(colour="red"), "unexpected keyword argument 'colour'"),
    ("missing_field", config_with(n_head=None), "n_head"),
    ("boolean", config_with(tie_weights="false"), "tie_weights must be a boolean"),
    ("huge", config_with(vocab_size=10**13), "would need about"),
    ("optimizer", lambda a, m: a.update({"optimizer/m.0": np.zeros(3, np.float32)}), "optimizer state m.0"),
    ("steps", lambda a, m: m.update(step="two"), "'step' must be a int"),
    ("train_config", lambda a, m: m.update(train_config=[1]), "'train_config' must be a dict"),
    ("optimizer_bomb", lambda a, m: a.update({"optimizer/v.99": np.zeros(10**6, np.uint8)}), "optimizer/v.99 is"),
    ("symbols", lambda a, m: m.update(symbols=["a"]), "'symbols' must list the 10"),
    ("stranger", lambda a, m: a.update({"payload": np.zeros(2)}), "unexpected members ['payload.npy']"),
]


@pytest.mark.parametrize("name, change, message", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_a_damaged_or_crafted_checkpoint_is_one_checkpoint_error(tmp_path, name, change, message):
    path = crafted(tmp_path, name, change)
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.load(path)
    assert path in str(caught.value) and message in str(caught.value)


def test_an_oversized_member_is_refused_before_it_is_read(tmp_path):
    def bomb(arrays, meta):
        arrays["model/ln_f.gamma"] = np.zeros(50_000_000, np.uint8)  # 50 MB of zeros: a small zip entry
    path = crafted(tmp_path, "bomb", bomb)
    assert os.path.getsize(path) < 60_000_000
    with pytest.raises(checkpoint.CheckpointError, match="member model/ln_f.gamma is 50000128 bytes unpacked"):
        checkpoint.load(path)


def test_the_teacher_is_checked_by_its_vocabulary_symbols(teacher_dir, tmp_path, capsys):
    other = tmp_path / "other.txt"
    rng = random.Random(1)
    other.write_text("".join(rng.choice("hijklmn \n") for _ in range(1500)), encoding="utf-8")  # 9 symbols too
    one_line_error(capsys, 2, ["distill", "--teacher", teacher_dir, "--data", str(other), "--out",
                               str(tmp_path / "s"), "--quiet"], "trained on other symbols", "symbol 2 is 'a'")
    assert not (tmp_path / "s").exists()


# ---- every error is one clear line, checked before any work or write -------------------------------
def test_bad_values_are_refused_up_front(teacher_dir, text_file, tmp_path, capsys):
    out = tmp_path / "never"
    distill = ["distill", "--teacher", teacher_dir, "--data", text_file, "--out", str(out), "--quiet"]
    train = ["train", "--task", "text", "--data", text_file, "--out", str(out), "--quiet"]
    cases = [
        (["demo", "--fast", "--T", "0", "--out", str(out)], "T must be a finite number > 0"),
        (["demo", "--fast", "--lam", "2", "--out", str(out)], "lam must be in [0, 1]"),
        ([*distill, "--lr", "-1"], "lr must be a finite number > 0"),
        ([*distill, "--train-tokens", "0"], "--train-tokens must be a positive integer"),
        (["sweep", "--teacher", teacher_dir, "--lam", "", "--out", str(out)], "--lam must list at least one number"),
        ([*train, "--batch-size", "0"], "batch_size must be a positive integer"),
        ([*train, "--dropout", "1.5"], "dropout must be in [0, 1), got 1.5"),
        ([*train, "--batch-size", str(10**12)], "batch_size=1000000000000 for this model would need about"),
        (["train", "--task", "grammar", "--data", text_file, "--out", str(out)],
         "--data is read only with --task text"),
        ([*distill, "--layer-map", "1:1"], "--layer-map needs --hidden-weight"),
        (["generate", teacher_dir, "--greedy", "--temperature", "2"], "contradict"),
        (["generate", teacher_dir, "--samples", "0"], "--samples must be a positive integer"),
        (["bench", "kd-loss", "--N", "0"], "--N must be a positive integer, got 0"),
        (["generate", teacher_dir, "--data", text_file, "--samples", str(10**12)],
         "--samples 1000000000000 with --max-new-tokens 32 would"),
        ([*distill, "--train-tokens", "5000"], "--train-tokens sizes the grammar corpus only"),
    ]
    for argv, message in cases:
        one_line_error(capsys, 2, argv, message)
        assert not out.exists(), argv  # nothing written, nothing trained


def test_a_flag_without_effect_is_a_warning(teacher_dir, text_file, tmp_path, capsys):
    assert main(["distill", "--teacher", teacher_dir, "--data", text_file, "--student-preset", "tiny", "--steps",
                 "2", "--eval-every", "2", "--batch-size", "2", "--lam-end", "0.3", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    warning = "minikd distill: warning: --lam-end 0.3 has no effect with --schedule constant"
    assert capsys.readouterr().err.strip() == warning


def test_filesystem_errors_are_one_line(tmp_path, capsys):
    bench = ["bench", "kd-loss", "--N", "8", "--V", "16", "--repeat", "1", "--json"]
    one_line_error(capsys, 2, [*bench, str(tmp_path)], f"--json {str(tmp_path)!r} is a folder")
    one_line_error(capsys, 1, [*bench, "/dev/full"], "writing --json '/dev/full': No space left on device")  # disk full


ENV_CASES = [
    ({"MINIKD_BACKEND": "tpu"}, ["-c", "import minikd; print(minikd.backend.name())"], 0, "numpy"),
    ({"MINIKD_BACKEND": "tpu"}, ["-m", "minikd", "--help"], 0, "usage: minikd"),
    ({"MINIKD_BACKEND": "tpu"}, ["-m", "minikd", "check"], 1, "MINIKD_BACKEND='tpu' cannot be used"),
    ({"MINIKD_NUM_THREADS": "lots"}, ["-m", "minikd", "check"], 2, "MINIKD_NUM_THREADS must be a positive integer"),
    ({"MINIKD_FAST": "yes"}, ["-c", "import minikd.tools.tutorial"], 1, "MINIKD_FAST must be 1 (fast) or 0"),
]


@pytest.mark.parametrize("env, argv, code, message", ENV_CASES)
def test_environment_switches_accept_only_documented_values(env, argv, code, message):
    done = subprocess.run([sys.executable, *argv], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == code and message in done.stdout + done.stderr, done.stderr
    if argv[1] == "minikd" and code:
        assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith("minikd check: error")


def test_backend_flag_overrides_the_environment():
    done = subprocess.run([sys.executable, "-c", "import sys; from minikd.tools.cli import main; "
                           "sys.exit(main(['--backend', 'numpy', 'bench', 'kd-loss', '--N', '8', '--V', '16', "
                           "'--repeat', '1']))"], env={**os.environ, "MINIKD_BACKEND": "tpu"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---- messages blame the right thing; NumPy scalars; limits of generate; booleans -------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings on the way to the error
def test_divergence_blames_the_learning_rate(text_file):
    task = data.load_task("text", data=text_file)
    model = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=0)
    config = TrainConfig(steps=20, batch_size=4, eval_every=20, eval_windows=4, warmup=0, grad_clip=0.0,
                         optimizer="sgd", lr=1e30)
    with pytest.raises(ValueError, match=r"training diverged.*lr=1e\+30 is too large"):
        train_recipe.train(model, task, config, progress=False)


def test_an_overflow_names_the_temperature_or_lambda():
    z = np.array([[0.0, 1e30]], np.float32)
    with pytest.raises(ValueError, match="divided by T=1e-30 they reach 1e.60, beyond float32; choose a larger T"):
        F.distillation_loss(tensor(z), arr(z[:, ::-1].copy()), arr([0]), lam=1.0, T=1e-30)
    z = np.array([[0.0, 30.0]], np.float32)
    with pytest.raises(ValueError, match="the distillation weight λ·T² reaches 1e.38; choose a smaller λ"):
        F.distillation_loss(tensor(z), arr(z[:, ::-1].copy()), arr([0]), lam=1e38, T=1.0, form="additive")


def test_numpy_scalars_are_accepted_where_python_numbers_are(tmp_path):
    config = TrainConfig(steps=np.int64(2), batch_size=np.int32(2), lr=np.float32(1e-3), eval_every=np.int64(2))
    kd = DistillConfig(lam=np.float32(0.5), T=np.float64(2.0))
    assert type(config.steps) is int and type(kd.lam) is float and json.dumps(kd.to_dict())
    model = TransformerLM(ModelConfig(vocab_size=np.int64(7), block_size=4, n_layer=1, n_head=1, n_embd=np.int64(8)))
    idx = backend.xp().zeros((1, 1), dtype=backend.xp().int64, device=backend.device())
    assert model.generate(idx, np.int64(2), temperature=np.float32(0.7), top_k=np.int64(3)).shape == (1, 3)
    F.softmax(tensor(np.zeros((2, 3), np.float32)), T=np.float32(2.0))


def test_generate_at_the_limits_of_temperature():
    model = TransformerLM(preset("tiny", 12, 8), seed=0)
    idx = backend.xp().zeros((400, 1), dtype=backend.xp().int64, device=backend.device())
    logits = backend.to_numpy(model(idx).data[0, -1, :])
    top3 = set(np.argsort(logits)[-3:].tolist())
    uniform = backend.to_numpy(model.generate(idx, 1, temperature=float("inf"), top_k=3, seed=1))[:, -1]
    counts = np.bincount(uniform, minlength=12)
    assert set(np.nonzero(counts)[0].tolist()) == top3 and counts.min(initial=400, where=counts > 0) > 100
    everywhere = backend.to_numpy(model.generate(idx, 1, temperature=float("inf"), seed=1))[:, -1]
    assert len(set(everywhere.tolist())) == 12  # no NaN -> token 0: every token drawn
    greedy = backend.to_numpy(model.generate(idx[:2, :], 1, temperature=0, top_k=3))[:, -1]
    assert greedy.tolist() == [int(np.argmax(logits))] * 2


def test_config_booleans_are_booleans():
    with pytest.raises(TypeError, match="tie_weights must be a boolean"):
        ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, tie_weights="no")


# ---- under load: worker and BLAS threads ------------------------------------------------------------
def test_num_threads_and_the_blas_pool(monkeypatch):
    import threadpoolctl

    monkeypatch.setenv("MINIKD_NUM_THREADS", "1")
    assert backend.num_threads() == 1
    monkeypatch.setenv("MINIKD_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="MINIKD_NUM_THREADS must be a positive integer, got '0'"):
        backend.num_threads()
    monkeypatch.delenv("MINIKD_NUM_THREADS")
    assert backend.num_threads() == len(os.sched_getaffinity(0))
    with threadpoolctl.threadpool_limits(limits=None):  # restored afterwards
        backend.limit_blas_threads(1)
        blas = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
        assert blas and set(blas) == {1}
