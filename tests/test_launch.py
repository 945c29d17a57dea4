"""``minikd distill`` and ``minikd sweep`` (recipes/launch.py): every flag reaches its function, the
defaults are the documented ones, a sweep's results file is appended and read back exactly, and what
the commands print names the run's facts.

The wiring tests replace ``launch.run``, ``launch.sweep`` or ``launch.train`` by a recorder, so they
cost no training; the rest train a tiny student for one or two steps.
"""

import json
import os
import warnings
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest
from reference import assert_same_params

from minikd import backend
from minikd.nn import schedules
from minikd.nn.model import PRESETS, TransformerLM, preset
from minikd.recipes import checkpoint, launch, run_folder, sizes
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.recipes.hidden import HiddenDistiller
from minikd.recipes.teacher import load_setting, new_student
from minikd.recipes.train import TrainConfig, train
from minikd.recipes.train import run as train_run
from minikd.tools.cli import main, parser

ONE_STEP = TrainConfig(steps=1, batch_size=2, eval_every=1, eval_windows=2, warmup=0, seed=3)
TWO_STEPS = replace(ONE_STEP, steps=2)  # evaluations at steps 0, 1 and 2


SIZES = {"grammar": (60, 32), "addition": (12, 11)}  # (vocabulary, window) of each built-in task's defaults


def untrained_teacher(folder, task="grammar", preset_name="tiny"):
    """A teacher run folder holding an untrained model of ``task``: only the wiring matters in this file."""
    checkpoint.save(str(folder / "checkpoint.npz"), TransformerLM(preset(preset_name, *SIZES[task]), seed=0), step=1,
                    task=task, train_config={"seed": 0})
    return str(folder)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return untrained_teacher(tmp_path_factory.mktemp("teacher"))


def recorder(monkeypatch, name):
    """Replace ``launch.<name>`` by a function that records its arguments."""
    calls = []
    monkeypatch.setattr(launch, name, lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def recorded_train(monkeypatch):
    """``launch.train`` records its arguments (the student first), then trains quietly as the real one would."""
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return train(*args, **{**kwargs, "progress": False})

    monkeypatch.setattr(launch, "train", spy)
    return calls


# --- the commands hand every flag to their functions -------------------------------------------------------

def test_distill_command_hands_every_flag_to_run(monkeypatch):
    calls = recorder(monkeypatch, "run")
    assert main(["distill", "--teacher", "T", "--student-preset", "tiny", "--divergence", "jsd", "--form",
                 "additive", "--label-noise", "0.1", "--teacher-bias", "the,cats,2", "--train-tokens", "5000",
                 "--task", "text", "--data", "D", "--lam", "0.3", "--lam-end", "0.1", "--schedule", "linear",
                 "--T", "3", "--T-end", "1.5", "--T-schedule", "cosine", "--completions", "sampled", "--on-policy",
                 "0.25", "--hidden-weight", "0.2", "--layer-map", "0:0,2:1", "--steps", "7", "--batch-size", "3",
                 "--lr", "0.002", "--eval-every", "2", "--seed", "5", "--out", "O", "--resume", "--quiet"]) == 0
    (args, kwargs), = calls
    assert args == ("T", DistillConfig(lam=0.3, lam_end=0.1, lam_schedule="linear", T=3.0, T_end=1.5,
                                       T_schedule="cosine", divergence="jsd", form="additive", label_noise=0.1,
                                       teacher_bias=("the", "cats", 2.0)),
                    TrainConfig(steps=7, batch_size=3, lr=0.002, eval_every=2, seed=5), "O")
    assert kwargs == {"task_name": "text", "data": "D", "student_preset": "tiny", "train_tokens": 5000,
                      "completions": "sampled", "on_policy": 0.25, "hidden_weight": 0.2,
                      "layer_map": ((0, 0), (2, 1)), "resume": True, "overwrite": False, "progress": False}


def test_distill_command_defaults_are_the_documented_ones(monkeypatch):
    calls = recorder(monkeypatch, "run")
    assert main(["distill", "--teacher", "T"]) == 0
    assert main(["distill", "--teacher", "T", "--overwrite"]) == 0
    (args, kwargs), (_, overwriting) = calls
    assert args == ("T", DistillConfig(), TrainConfig(), "runs/distill")
    assert kwargs == {"task_name": None, "data": None, "student_preset": "small", "train_tokens": None,
                      "completions": None, "on_policy": 0.0, "hidden_weight": 0.0, "layer_map": None,
                      "resume": False, "overwrite": False, "progress": True}
    assert (overwriting["resume"], overwriting["overwrite"]) == (False, True)


def test_sweep_command_hands_every_flag_to_sweep(monkeypatch):
    calls = recorder(monkeypatch, "sweep")
    assert main(["sweep", "--teacher", "T", "--student-preset", "tiny", "--divergence", "reverse_kl", "--form",
                 "additive", "--label-noise", "0.2", "--teacher-bias", "a,b,1.5", "--train-tokens", "3000",
                 "--lam", "0,0.5", "--T", "2,8", "--steps", "6", "--batch-size", "4", "--eval-every", "3",
                 "--seed", "9", "--out", "O", "--overwrite", "--quiet"]) == 0
    (args, kwargs), = calls
    assert args == ("T", [0.0, 0.5], [2.0, 8.0],
                    DistillConfig(divergence="reverse_kl", form="additive", label_noise=0.2,
                                  teacher_bias=("a", "b", 1.5)),
                    TrainConfig(steps=6, batch_size=4, eval_every=3, seed=9), "O")
    assert kwargs == {"student_preset": "tiny", "train_tokens": 3000, "resume": False, "overwrite": True,
                      "progress": False}


def test_sweep_command_defaults_are_the_documented_ones(monkeypatch):
    calls = recorder(monkeypatch, "sweep")
    assert main(["sweep", "--teacher", "T"]) == 0
    assert main(["sweep", "--teacher", "T", "--resume"]) == 0
    (args, kwargs), (_, resuming) = calls
    assert args == ("T", [0.0, 0.25, 0.5, 0.75, 1.0], [1.0, 2.0, 4.0], DistillConfig(),
                    TrainConfig(steps=400, eval_every=100), "runs/sweep")
    assert kwargs == {"student_preset": "small", "train_tokens": None, "resume": False, "overwrite": False,
                      "progress": True}
    assert (resuming["resume"], resuming["overwrite"]) == (True, False)


@pytest.mark.parametrize("flags, warned", [
    ([], None),
    (["--lam-end", "0.3"], "--lam-end 0.3 has no effect with --schedule constant"),
    (["--lam-end", "0.3", "--schedule", "linear"], None),
    (["--T-end", "4.0"], "--T-end 4.0 has no effect with --T-schedule constant"),
    (["--T-end", "4.0", "--T-schedule", "cosine"], None),
    (["--schedule", "linear", "--T-schedule", "cosine"], None),
])
def test_an_end_value_warns_only_when_its_schedule_is_constant(monkeypatch, flags, warned):
    """``--lam-end`` (``--T-end``) away from its default does nothing with a constant ``--schedule``
    (``--T-schedule``): that, and only that, is a warning; the run goes on."""
    calls = recorder(monkeypatch, "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        launch._distill_command(parser().parse_args(["distill", "--teacher", "T", *flags]))
    assert [str(w.message) for w in caught] == ([warned] if warned else [])
    assert len(calls) == 1


# --- the functions' defaults ------------------------------------------------------------------------------

def test_run_defaults_a_small_student_with_a_bar_and_refuses_a_taken_folder(teacher_dir, tmp_path, capsys,
                                                                             monkeypatch):
    """``launch.run`` without options: a 'small' student on the teacher's own task, a progress bar, the
    lines printed; a second call into the finished folder is refused (no resume, no overwrite)."""
    trains = recorded_train(monkeypatch)
    out = str(tmp_path / "run")
    student, history = launch.run(teacher_dir, DistillConfig(), TWO_STEPS, out, train_tokens=2000)
    assert student.config.n_embd == PRESETS["small"]["n_embd"] and student.config.n_layer == PRESETS["small"]["n_layer"]
    (trained, *_), kwargs = trains[0]
    assert trained is student and (kwargs["progress"], kwargs["resume"]) == (True, False)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("distilling ") and "'small' student" in printed[0] and "on grammar" in printed[0]
    assert printed[0].endswith("forward_kl, lam 0.5 (constant), T 2.0 (constant)")  # no option is on
    assert printed[-1] == f"student: {launch._summary(history[-1])}"
    with pytest.raises(run_folder.RunFolderError, match="already holds a finished 'minikd distill' run"):
        launch.run(teacher_dir, DistillConfig(), TWO_STEPS, out, train_tokens=2000)


def test_sweep_defaults_a_small_student_with_a_bar_and_refuses_a_taken_folder(teacher_dir, tmp_path, capsys,
                                                                               monkeypatch):
    trains = recorded_train(monkeypatch)
    out = str(tmp_path / "sweep")
    rows = launch.sweep(teacher_dir, [0.5], [2.0], DistillConfig(), ONE_STEP, out, train_tokens=2000)
    (student, *_), kwargs = trains[0]
    assert student.config.n_embd == PRESETS["small"]["n_embd"] and student.config.n_layer == PRESETS["small"]["n_layer"]
    assert kwargs["progress"] is True and kwargs["loss_fn"].config == DistillConfig(lam=0.5, T=2.0)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"wrote {os.path.join(out, 'results.csv')} (1 runs)"
    assert len(rows) == 1
    with pytest.raises(run_folder.RunFolderError, match="already holds a finished 'minikd sweep' run"):
        launch.sweep(teacher_dir, [0.5], [2.0], DistillConfig(), ONE_STEP, out, train_tokens=2000)


# --- a sweep's results file --------------------------------------------------------------------------------

def test_a_sweep_stopped_after_its_first_row_resumes_to_the_uninterrupted_rows(teacher_dir, tmp_path, monkeypatch,
                                                                                capsys):
    """A sweep that fails while training its second student keeps its first row in results.csv; ``resume``
    reads that row back (numbers as numbers), trains only the rest, and ends with the rows of a sweep that
    was never stopped."""
    grid = dict(lams=[0.0, 1.0], temperatures=[2.0], base=DistillConfig(), train_config=ONE_STEP,
                student_preset="tiny", train_tokens=2000, progress=False, out_fn=lambda *a: None)
    whole = launch.sweep(teacher_dir, out=str(tmp_path / "whole"), **grid)
    trains = recorded_train(monkeypatch)
    real = launch.train

    def fail_second(*args, **kwargs):
        if len(trains) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(launch, "train", fail_second)
    out = str(tmp_path / "stopped")
    with pytest.raises(KeyboardInterrupt):
        launch.sweep(teacher_dir, out=out, **grid)
    results = os.path.join(out, "results.csv")
    assert len(launch.read_rows(results)) == 1
    monkeypatch.setattr(launch, "train", real)
    printed = []
    resumed = launch.sweep(teacher_dir, out=out, resume=True, **{**grid, "out_fn": printed.append})
    assert len(trains) == 2  # the first row was loaded, not trained again
    assert resumed == whole and launch.read_rows(results) == whole
    assert printed[0] == f"lam=0     T=2     already in {results}"
    assert printed[1].startswith("lam=1     T=2     validation CE ")


def test_each_row_holds_its_settings_and_the_final_metrics_without_step_lr_or_time(teacher_dir, tmp_path, monkeypatch):
    finals = []

    def spy(*args, **kwargs):
        history = train(*args, **kwargs)
        finals.append(history[-1])
        return history

    monkeypatch.setattr(launch, "train", spy)
    two_steps = replace(ONE_STEP, steps=2)  # evaluations at steps 0, 1 and 2: the row is the last one's
    rows = launch.sweep(teacher_dir, [0.25], [1.0, 3.0], DistillConfig(divergence="jsd", form="additive"), two_steps,
                        str(tmp_path / "s"), student_preset="tiny", train_tokens=2000, progress=False,
                        out_fn=lambda *a: None)
    for row, final, T in zip(rows, finals, (1.0, 3.0)):
        metrics = {k: v for k, v in final.items() if k not in ("step", "lr", "elapsed_s")}
        assert final["step"] == 2
        assert row == {"lam": 0.25, "T": T, "divergence": "jsd", "form": "additive", "steps": 2, "seed": 3, **metrics}
        assert {"val_loss", "kl_to_teacher", "agreement"} <= set(metrics) and "elapsed_s" in final


def test_append_row_writes_the_header_once(tmp_path):
    """The first row of a new or empty file comes after the header; later rows come alone."""
    path = str(tmp_path / "results.csv")
    launch.append_row(path, {"lam": 0.5, "name": "a"})
    launch.append_row(path, {"lam": 1, "name": "b"})
    with open(path, newline="") as f:
        assert f.read() == "lam,name\r\n0.5,a\r\n1,b\r\n"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    launch.append_row(str(empty), {"T": 2.0})
    assert empty.read_text() == "T\n2.0\n"


def test_read_rows_turns_numbers_back_and_drops_a_cut_last_line(tmp_path):
    """What append_row wrote comes back with ints as ints, floats as floats and words as words; a last
    line cut short (a killed run) is removed from the file, a missing file has no rows."""
    path = tmp_path / "results.csv"
    assert launch.read_rows(str(path)) == []
    path.write_bytes(b"")
    os.utime(path, ns=(10**9, 10**9))
    assert launch.read_rows(str(path)) == [] and os.stat(path).st_mtime_ns == 10**9  # an empty file is not written
    path.unlink()
    for row in ({"lam": 0.5, "steps": 2, "divergence": "jsd", "val_loss": 1e-05},
                {"lam": 1.0, "steps": 3, "divergence": "reverse_kl", "val_loss": 2.5}):
        launch.append_row(str(path), row)
    whole = path.read_bytes()  # csv's own line ends, \r\n
    rows = launch.read_rows(str(path))
    assert rows == [{"lam": 0.5, "steps": 2, "divergence": "jsd", "val_loss": 1e-05},
                    {"lam": 1.0, "steps": 3, "divergence": "reverse_kl", "val_loss": 2.5}]
    assert [type(v) for v in rows[0].values()] == [float, int, str, float]
    assert path.read_bytes() == whole
    os.utime(path, ns=(10**9, 10**9))
    assert launch.read_rows(str(path)) == rows and os.stat(path).st_mtime_ns == 10**9  # a complete file is not written
    path.write_bytes(whole + b"0.75,4,js")
    assert launch.read_rows(str(path)) == rows and path.read_bytes() == whole  # the cut line gone, the rest as it was


# --- what the commands print -------------------------------------------------------------------------------

def test_summary_names_each_metric_it_has():
    final = {"val_loss": 1.23456, "kl_to_teacher": 0.5, "agreement": 0.875}
    assert launch._summary(final) == "validation CE 1.2346, KL to the teacher 0.5000, top-1 agreement 87.5%"
    assert launch._summary({**final, "kl_to_true": 0.25, "accuracy": 0.5}) == (
        "validation CE 1.2346, KL to the teacher 0.5000, top-1 agreement 87.5%, KL to the truth 0.2500, "
        "exact match 50.0%")


def test_distill_prints_the_teacher_the_student_and_the_objective(teacher_dir, tmp_path):
    """The first line names the teacher's checkpoint and size, the student's preset and size, the task,
    the divergence, λ and T with their schedules, and each option that is on."""
    printed = []
    config = DistillConfig(lam=0.3, lam_end=0.1, lam_schedule="linear", T=3.0, T_schedule="constant",
                           divergence="jsd")
    student, _ = launch.run(teacher_dir, config, ONE_STEP, str(tmp_path / "a"), student_preset="tiny",
                            train_tokens=2000, hidden_weight=0.5, progress=False, out_fn=printed.append)
    teacher = checkpoint.load(checkpoint.path_of(teacher_dir)).model()
    last = PRESETS["tiny"]["n_layer"]  # the last block of the student and of the (tiny) teacher
    assert printed[0] == (f"distilling {checkpoint.path_of(teacher_dir)} ({teacher.num_params():,} parameters) "
                          f"into a 'tiny' student ({student.num_params():,}) on grammar: jsd, lam 0.3 (linear), "
                          f"T 3.0 (constant); hidden states {((last, last),)} with mu=0.5")
    assert len(printed) == 2 and printed[1].startswith("student: validation CE ")


# --- what is refused before any work -----------------------------------------------------------------------

def test_a_sweep_needs_a_value_of_each_and_a_bias_inside_the_vocabulary(teacher_dir, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(ValueError, match="^--lam must list at least one value, got none$"):
        launch.sweep(teacher_dir, [], [1.0], DistillConfig(), ONE_STEP, str(out))
    with pytest.raises(ValueError, match="^--T must list at least one value, got none$"):
        launch.sweep(teacher_dir, [0.5], [], DistillConfig(), ONE_STEP, str(out))
    with pytest.raises(ValueError, match="60"):
        launch.sweep(teacher_dir, [0.5], [1.0], DistillConfig(teacher_bias=(1, 60, 2.0)), ONE_STEP, str(out))
    with pytest.raises(ValueError, match="--train-tokens"):
        launch.sweep(teacher_dir, [0.5], [1.0], DistillConfig(), ONE_STEP, str(out), train_tokens=0)
    assert not out.exists()


def test_a_layer_map_needs_a_hidden_weight(teacher_dir, tmp_path):
    with pytest.raises(ValueError, match="^--layer-map needs --hidden-weight > 0"):
        launch.run(teacher_dir, DistillConfig(), ONE_STEP, str(tmp_path / "r"), layer_map=[(1, 1)])
    assert not (tmp_path / "r").exists()


def test_parse_numbers_reads_a_comma_list_and_names_the_flag():
    assert launch.parse_numbers("--lam", "0, 0.5,,1,") == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"^--T must be comma-separated numbers, got '1,x'$"):
        launch.parse_numbers("--T", "1,x")
    with pytest.raises(ValueError, match=r"^--lam must list at least one number, got ' , '$"):
        launch.parse_numbers("--lam", " , ")


def test_parse_bias_reads_two_tokens_and_a_bonus():
    assert launch.parse_bias(None) == ()
    assert launch.parse_bias(" the , cats ,4") == ("the", "cats", 4.0)
    for text in ("the,cats", "the,cats,4,5", "the,cats,many"):
        with pytest.raises(ValueError, match=f"^--teacher-bias must be CONTEXT,WRONG,BONUS .*got {text!r}$"):
            launch.parse_bias(text)


def test_each_flag_is_refused_for_a_task_it_does_not_apply_to():
    grammar, text = SimpleNamespace(name="grammar"), SimpleNamespace(name="text")
    with pytest.raises(ValueError, match="^--data is read only with task 'text', but this run's task is 'grammar'$"):
        launch.check_flags_for_task(grammar, "corpus.txt", None)
    with pytest.raises(ValueError, match="^--train-tokens sizes the grammar corpus only, but this run's task is 'text'$"):
        launch.check_flags_for_task(text, None, 1000)
    launch.check_flags_for_task(grammar, None, 1000)
    launch.check_flags_for_task(text, "corpus.txt", None)


def test_train_tokens_beyond_memory_are_refused_by_name(monkeypatch):
    """32 bytes a token (four int64 copies of the corpus) must fit in the available memory, here 8 MB."""
    monkeypatch.setattr(sizes, "available_memory", lambda: 8_000_000)
    launch.check_train_tokens(None)
    launch.check_train_tokens(250_000)
    with pytest.raises(ValueError, match="^--train-tokens 250001 would need about "):
        launch.check_train_tokens(250_001)


def test_a_sweep_refuses_train_tokens_for_another_task(tmp_path):
    """An addition teacher: --train-tokens (the grammar's corpus size) is refused, not ignored."""
    folder = untrained_teacher(tmp_path / "addition", "addition")
    with pytest.raises(ValueError, match="^--train-tokens sizes the grammar corpus only, but this run's task is 'addition'"):
        launch.sweep(folder, [0.5], [1.0], DistillConfig(), ONE_STEP, str(tmp_path / "s"), train_tokens=2000)
    assert not (tmp_path / "s").exists()


def test_a_sweep_records_its_settings_and_never_writes_beside_its_teacher(teacher_dir, tmp_path):
    """run.json holds each setting by the name a refused resume shows; --out inside the teacher's folder
    is refused, naming --teacher."""
    base = DistillConfig(form="additive")
    out = tmp_path / "s"
    launch.sweep(teacher_dir, [0.5], [1.0], base, ONE_STEP, str(out), student_preset="tiny", train_tokens=2000,
                 progress=False, out_fn=lambda *a: None)
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings == {"teacher": run_folder.file_identity(checkpoint.path_of(teacher_dir)), "lams": [0.5],
                        "temperatures": [1.0], "base": json.loads(json.dumps(base.to_dict())),
                        "train_config": asdict(ONE_STEP), "student_preset": "tiny", "train_tokens": 2000}
    with pytest.raises(run_folder.RunFolderError, match="the folder of --teacher"):
        launch.sweep(teacher_dir, [0.5], [1.0], base, ONE_STEP, os.path.join(teacher_dir, "sweep"),
                     student_preset="tiny", train_tokens=2000)


def test_a_sweep_runs_the_teacher_once_per_step_and_follows_the_base_schedule(teacher_dir, tmp_path, monkeypatch):
    """Every row trains on the same batches, so the rows after the first take the teacher's logits from
    one TeacherCache; each row's λ follows the base's schedule over the run's steps."""
    caches = []

    class Counted(launch.TeacherCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            caches.append(self)

    monkeypatch.setattr(launch, "TeacherCache", Counted)
    trains = recorded_train(monkeypatch)
    two_steps = replace(ONE_STEP, steps=2)
    launch.sweep(teacher_dir, [0.5, 1.0], [2.0], DistillConfig(lam_schedule="linear", lam_end=0.0), two_steps,
                 str(tmp_path / "s"), student_preset="tiny", train_tokens=2000, progress=False, out_fn=lambda *a: None)
    (cache,) = caches
    assert cache.hits == 2  # the second row's two steps
    for (_, kwargs), lam in zip(trains, (0.5, 1.0)):
        assert kwargs["loss_fn"].cache is cache
        assert [kwargs["loss_fn"].describe(t)["lam"] for t in (0, 1)] == [lam, schedules.Linear(lam, 0.0, 2)(1)]


def test_sweep_names_a_bad_temperature_list_by_its_flag(monkeypatch, capsys):
    recorder(monkeypatch, "sweep")
    assert main(["sweep", "--teacher", "T", "--T", "1,x"]) == 2
    assert capsys.readouterr().err.strip() == "minikd sweep: error: --T must be comma-separated numbers, got '1,x'"


# --- minikd distill's run ----------------------------------------------------------------------------------

def stop_at(step, trains):
    """A stand-in for launch.train that trains quietly and is interrupted (Ctrl-C) before ``step``."""
    def stopping(*args, **kwargs):
        trains.append((args, kwargs))
        inner = kwargs["loss_fn"]

        def loss_fn(model, x, y, t):
            if t == step:
                raise KeyboardInterrupt
            return inner(model, x, y, t)

        return train(*args, **{**kwargs, "loss_fn": loss_fn, "progress": False})
    return stopping


def test_a_token_level_run_is_the_distiller_of_its_seed(teacher_dir, tmp_path):
    """With label noise the run's seed decides which labels are corrupted: the student equals one
    trained by hand with Distiller(seed = the run's seed)."""
    config = DistillConfig(lam=0.3, label_noise=0.5)
    student, _ = launch.run(teacher_dir, config, TWO_STEPS, str(tmp_path / "r"), student_preset="tiny",
                            train_tokens=2000, progress=False, out_fn=lambda *a: None)
    _, teacher, task = load_setting(teacher_dir, TWO_STEPS.seed, train_tokens=2000)
    reference = new_student("tiny", task, teacher, TWO_STEPS.seed)
    train(reference, task, TWO_STEPS, loss_fn=Distiller(teacher, config, 2, seed=TWO_STEPS.seed), progress=False)
    assert_same_params(student, reference)


def test_a_hidden_state_run_stopped_and_resumed_is_the_uninterrupted_one(tmp_path, monkeypatch):
    """A hidden-state run with label noise, from a teacher wider than the student (so projections are
    learned), stopped by Ctrl-C after its step-2 checkpoint and resumed, ends with the student and
    projections of the run never stopped; that run is HiddenDistiller(seed = the run's seed) trained by
    hand with its projections; every record logs the step's λ and μ, schedule.jsonl lists each step's."""
    teacher_dir = untrained_teacher(tmp_path / "teacher", preset_name="small")
    config = DistillConfig(lam=0.6, lam_end=0.2, lam_schedule="linear", label_noise=0.5)
    steps = TrainConfig(steps=4, batch_size=2, eval_every=2, eval_windows=2, warmup=0, seed=3)
    options = dict(student_preset="tiny", train_tokens=2000, hidden_weight=0.5, progress=False,
                   out_fn=lambda *a: None)
    whole, _ = launch.run(teacher_dir, config, steps, str(tmp_path / "whole"), **options)
    _, teacher, task = load_setting(teacher_dir, steps.seed, train_tokens=2000)
    reference = new_student("tiny", task, teacher, steps.seed)
    hidden = HiddenDistiller(teacher, reference, config, 4, mu=0.5, seed=steps.seed)
    initial = {name: backend.to_numpy(value).copy() for name, value in hidden.projections.state_dict().items()}
    train(reference, task, steps, loss_fn=hidden, extra=hidden.projections, progress=False)
    assert_same_params(whole, reference)
    learned = {name: backend.to_numpy(value) for name, value in hidden.projections.state_dict().items()}
    assert learned and all((learned[name] != initial[name]).any() for name in learned)

    out = tmp_path / "stopped"
    monkeypatch.setattr(launch, "train", stop_at(3, []))
    with pytest.raises(KeyboardInterrupt):
        launch.run(teacher_dir, config, steps, str(out), **options)
    assert json.loads((out / "run.json").read_text())["finished"] is False
    resumes = recorded_train(monkeypatch)
    resumed, _ = launch.run(teacher_dir, config, steps, str(out), resume=True, **options)
    assert resumes[0][1]["resume"] is True
    assert_same_params(resumed, whole)
    for folder in (tmp_path / "whole", out):
        kept = checkpoint.load(str(folder / "checkpoint.npz")).extra_state
        assert set(kept) == set(learned), folder
        for name, value in learned.items():
            np.testing.assert_array_equal(backend.to_numpy(kept[name]), value, err_msg=name)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lam"], r["mu"]) for r in records] == [(t, hidden.describe(t)["lam"], 0.5) for t in (0, 2, 4)]
    schedule = [json.loads(line) for line in (out / "schedule.jsonl").read_text().splitlines()]
    assert schedule == [{"step": t, **hidden.describe(t)} for t in range(4)]
    pairs = [[PRESETS["tiny"]["n_layer"], PRESETS["small"]["n_layer"]]]  # the last block of each
    assert json.loads((out / "run.json").read_text())["settings"]["layer_map"] == pairs
    assert json.loads((out / "distill_config.json").read_text())["layer_map"] == pairs


def test_a_run_records_its_settings_and_overwrite_replaces_it(teacher_dir, tmp_path, monkeypatch):
    """run.json holds each setting by the name a refused resume shows; ``overwrite`` trains the run again
    in its folder (the same student), ``resume`` reaches the training."""
    out = tmp_path / "r"
    config = DistillConfig(form="additive")
    options = dict(student_preset="tiny", train_tokens=2000, progress=False, out_fn=lambda *a: None)
    first, _ = launch.run(teacher_dir, config, TWO_STEPS, str(out), **options)
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings == {"teacher": run_folder.file_identity(checkpoint.path_of(teacher_dir)), "task": "grammar",
                        "data": None, "student_preset": "tiny", "train_tokens": 2000,
                        "distill_config": json.loads(json.dumps(config.to_dict())), "train_config": asdict(TWO_STEPS),
                        "completions": None, "on_policy": 0.0, "hidden_weight": 0.0, "layer_map": None}
    trains = recorded_train(monkeypatch)
    again, _ = launch.run(teacher_dir, config, TWO_STEPS, str(out), overwrite=True, **options)
    assert_same_params(again, first)
    assert trains[0][1]["resume"] is False


def test_a_text_run_records_its_data_file_and_refuses_data_for_another_task(teacher_dir, tmp_path):
    text = tmp_path / "letters.txt"
    text.write_text("".join(np.random.default_rng(0).choice(list("abc \n"), 3000)), encoding="utf-8")
    with pytest.raises(ValueError, match="^--data is read only with task 'text', but this run's task is 'grammar'"):
        launch.run(teacher_dir, DistillConfig(), TWO_STEPS, str(tmp_path / "g"), data=str(text))
    text_teacher = tmp_path / "text_teacher"
    train_run("text", "tiny", ONE_STEP, str(text_teacher), data=str(text), progress=False, out_fn=lambda *a: None)
    out = tmp_path / "t"
    launch.run(str(text_teacher), DistillConfig(), ONE_STEP, str(out), data=str(text), student_preset="tiny",
               progress=False, out_fn=lambda *a: None)
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["data"] == run_folder.file_identity(str(text)) and settings["task"] == "text"
    assert not (tmp_path / "g").exists()


def test_completions_must_be_greedy_or_sampled(teacher_dir, tmp_path):
    with pytest.raises(ValueError, match="^completions must be one of"):
        launch.run(teacher_dir, DistillConfig(), ONE_STEP, str(tmp_path / "r"), completions="beam")
    assert not (tmp_path / "r").exists()


def test_distill_prints_the_sequence_level_and_on_policy_options(tmp_path, monkeypatch):
    """An (untrained) addition teacher: the first line names the kind of completions and p. (The
    completions themselves are tested in test_workflow_properties; here the task stands in for them.)"""
    folder = untrained_teacher(tmp_path / "addition", "addition")
    temperatures = []
    monkeypatch.setattr(launch.sequence, "teacher_completions",
                        lambda teacher, task, seed, temperature: temperatures.append(temperature) or task)
    printed = []
    launch.run(folder, DistillConfig(), ONE_STEP, str(tmp_path / "s"), student_preset="tiny",
               completions="sampled", on_policy=0.5, progress=False, out_fn=printed.append)
    assert printed[0].endswith("T 2.0 (constant); trained on the teacher's sampled completions; on-policy with p=0.5")
    assert "exact match" in printed[1] and temperatures == [1.0]  # sampled at T = 1


@pytest.mark.parametrize("command", ["distill", "sweep"])
def test_the_teacher_is_required_and_each_choice_is_checked_by_the_parser(command, monkeypatch, capsys):
    """Without ``--teacher``, or with a value outside a flag's choices, argparse stops (exit 2, naming the
    flag) before the command's function is called."""
    calls = recorder(monkeypatch, "run" if command == "distill" else "sweep")
    with pytest.raises(SystemExit) as stop:
        main([command])
    assert stop.value.code == 2 and "the following arguments are required: --teacher" in capsys.readouterr().err
    own = ("--task", "--schedule", "--T-schedule", "--completions") if command == "distill" else ()
    for flag in ("--student-preset", "--divergence", "--form", *own):
        with pytest.raises(SystemExit) as stop:
            main([command, "--teacher", "T", flag, "nonsense"])
        assert stop.value.code == 2 and f"argument {flag}: invalid choice: 'nonsense'" in capsys.readouterr().err
    assert calls == []


def test_a_sweep_has_no_learning_rate_flag(monkeypatch, capsys):
    """Every row of a sweep trains at TrainConfig's learning rate: ``--lr`` is not one of its flags."""
    recorder(monkeypatch, "sweep")
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--teacher", "T", "--lr", "0.1"])
    assert stop.value.code == 2 and "unrecognized arguments: --lr 0.1" in capsys.readouterr().err
