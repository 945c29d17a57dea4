"""The coursework grader: every stub fails, every reference passes, every plausible mistake in
exercise_mistakes.py fails with its diagnosis; the grader's own errors are one line, exit 2; a student's
endless loop, prints and sys.exit are contained; the reports (text, JSON, Gradescope) have their shape.

The bulk grades in-process (SIGALRM watchdog, milliseconds a file); a few runs go through the worker process.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from exercise_mistakes import HEADER, MISTAKES
from minikd.tools.cli import main
from minikd.tools.exercises import EXERCISES, NAMES, get, grade
from minikd.tools.exercises.student import load

CASES = [(name, label, source, phrase) for name, mistakes in MISTAKES.items() for label, source, phrase in mistakes]
needs_alarm = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the in-process watchdog needs SIGALRM")


def grade_file(exercise, path):
    return grade(exercise, load(exercise, str(path)), 10.0, str(path))


def test_at_least_twelve_exercises_in_the_tutorials_order_each_with_stub_and_solution():
    assert len(EXERCISES) >= 12
    assert [e.tutorial for e in EXERCISES] == sorted(e.tutorial for e in EXERCISES)
    for e in EXERCISES:
        assert os.path.isfile(e.stub_path) and os.path.isfile(e.solution_path)
        statement = e.statement()
        assert statement.startswith("# ") and "Hint" in statement and "maths" in statement, e.name


@pytest.mark.parametrize("exercise", EXERCISES, ids=NAMES)
def test_the_reference_passes_and_the_stub_fails_every_check(exercise):
    assert all(r.passed for r in grade_file(exercise, exercise.solution_path)), exercise.name
    stub = grade_file(exercise, exercise.stub_path)
    assert not any(r.passed for r in stub)
    assert all("NotImplementedError" in r.message for r in stub)


def test_every_exercise_has_at_least_two_mistakes():
    assert set(MISTAKES) == set(NAMES)
    assert all(len(mistakes) >= 2 for mistakes in MISTAKES.values())


@pytest.mark.parametrize("name,label,source,phrase", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_a_plausible_mistake_fails_with_its_diagnosis(name, label, source, phrase, tmp_path):
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + source)
    results = grade_file(get(name), path)
    failures = [r.message for r in results if not r.passed]
    assert failures, f"{label}: every check passed"
    assert any(phrase in message for message in failures), failures


def test_a_failure_names_the_worst_element_expected_and_obtained(tmp_path):
    path = tmp_path / "kl.py"
    path.write_text(HEADER + dict((m[0], m[1]) for m in MISTAKES["t_squared"])["forgotten T²"])
    message = [r.message for r in grade_file(get("t_squared"), path) if not r.passed][0]
    assert "worst at index (" in message and "expected " in message and ", got " in message
    assert "gradient off by a factor T²: the soft term's T² is missing" in message


def test_grading_is_deterministic(tmp_path):
    path = tmp_path / "jsd.py"
    path.write_text(HEADER + MISTAKES["jsd"][1][1])
    first, second = grade_file(get("jsd"), path), grade_file(get("jsd"), path)
    assert [(r.passed, r.message) for r in first] == [(r.passed, r.message) for r in second]


@needs_alarm
def test_in_process_an_endless_loop_a_print_and_sys_exit_are_failed_checks(tmp_path, capsys):
    path = tmp_path / "pgr.py"
    path.write_text("import sys\nprint('hello from the top level')\n"
                    "def pgr(weak, student, ceiling):\n"
                    "    print('debugging')\n"
                    "    if ceiling == weak:\n        sys.exit(3)\n"
                    "    while student > weak:\n        pass\n"
                    "    return float('nan')\n")
    results = grade(get("pgr"), load(get("pgr"), str(path)), 0.3, str(path))
    assert capsys.readouterr().out == ""  # the student's prints are captured
    messages = [r.message for r in results]
    assert any("stopped at the time limit of 0.3 s" in m for m in messages)
    assert any("sys.exit(3)" in m for m in messages)
    assert not any(r.passed for r in results)


def run_cli(*args, cwd=None):
    done = subprocess.run([sys.executable, "-m", "minikd", "exercise", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def test_subprocess_worker_contains_a_hang_os_exit_and_prints(tmp_path):
    """The worker (the default) survives what the in-process watchdog cannot: a loop that swallows the
    alarm is killed from outside, os._exit ends one worker, and the next check runs in a fresh one."""
    path = tmp_path / "pgr.py"
    path.write_text("import os, time\n"
                    "def pgr(weak, student, ceiling):\n"
                    "    print('noise on stdout')\n"
                    "    os.write(1, b'noise on fd 1\\n')\n"
                    "    if ceiling == weak:\n        os._exit(7)\n"
                    "    while student == weak:\n"
                    "        try:\n            time.sleep(10)\n        except BaseException:\n            pass\n"
                    "    return (student - weak) / (ceiling - weak)\n")
    code, out, err = run_cli("check", "pgr", str(path), "--json", "--time-limit", "0.5")
    assert code == 1, err
    report = json.loads(out)  # the student's prints did not break the JSON
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name[next(n for n in by_name if n.startswith("values"))]["passed"]
    assert "stopped at the time limit of 0.5 s" in by_name[next(n for n in by_name if n.startswith("PGR = 0"))]["message"]
    assert "ended the grading process (exit status 7)" in by_name["ceiling == weak raises ValueError"]["message"]


@pytest.mark.parametrize("content,phrase", [
    (None, "no such file"),
    ("def softmax(z, T)\n    return z\n", "syntax error in"),
    ("def soft_max(z, T):\n    return z\n", "defines no softmax"),
    ("def softmax(z):\n    return z\n", "wrong signature"),
    ("import no_such_module_here\n", "raised ModuleNotFoundError"),
])
def test_the_graders_own_errors_are_one_line_exit_2(content, phrase, tmp_path, capsys):
    path = tmp_path / "softmax.py"
    if content is not None:
        path.write_text(content)
    assert main(["exercise", "check", "softmax_temperature", str(path)]) == 2  # through the worker process
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("minikd exercise: error: ") and phrase in err, err


def test_the_graders_own_error_from_the_command_line_has_no_traceback(tmp_path):
    path = tmp_path / "softmax.py"
    path.write_text("def softmax(z):\n    return z\n")
    code, out, err = run_cli("check", "softmax_temperature", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1 and "wrong signature" in err and "Traceback" not in err


def test_show_writes_the_stub_and_notebook_and_refuses_to_overwrite(tmp_path, capsys):
    stub, book = tmp_path / "kl.py", tmp_path / "kl_notebook.py"
    assert main(["exercise", "show", "kl", "--stub", str(stub), "--notebook", str(book)]) == 0
    out = capsys.readouterr().out
    assert "KL(p_T ‖ q_T)" in out and "Write: kl(z, v, T)" in out
    assert stub.read_text() == open(get("kl").stub_path).read()
    text = book.read_text()
    assert text.startswith("# %% [markdown]\n# # KL") and text.rstrip().endswith("check_in_notebook('kl', kl)")
    assert main(["exercise", "show", "kl", "--stub", str(stub)]) == 2
    assert "exists" in capsys.readouterr().err


@needs_alarm
def test_the_notebooks_last_cell_grades_the_reference(tmp_path):
    """Every notebook is valid Python; with the reference pasted into its code cell, its last cell passes."""
    from minikd.tools.exercises.catalog import notebook
    for exercise in EXERCISES:
        cells = notebook(exercise).split("# %%\n")
        assert len(cells) == 3, exercise.name
        reference = open(exercise.solution_path).read()
        namespace = {}
        exec(compile(reference + "\n" + cells[2].replace("check_in_notebook(", "passed = check_in_notebook("),
                     exercise.name, "exec"), namespace)
        assert namespace["passed"] is True, exercise.name
        compile(notebook(exercise), exercise.name, "exec")


def test_the_notebook_is_a_jupytext_percent_file_markdown_then_code():
    jupytext = pytest.importorskip("jupytext")
    from minikd.tools.exercises.catalog import notebook
    for exercise in EXERCISES:
        cells = jupytext.reads(notebook(exercise), fmt="py:percent").cells
        assert [c.cell_type for c in cells] == ["markdown", "code", "code"], exercise.name
        assert cells[0].source.startswith("# ") and "raise NotImplementedError" in cells[1].source
        assert cells[2].source.endswith(f"check_in_notebook({exercise.name!r}, {exercise.obj})")


def test_reference_solutions_are_array_api_code(monkeypatch):
    """Run under array-api-strict (no NumPy-only functions or methods), the references give NumPy's numbers."""
    xs = pytest.importorskip("array_api_strict")
    from minikd.engine import backend
    from minikd.tools.exercises.grading import integers, normal, probabilities
    from minikd.tools.exercises.solutions import (adamw_step, attention_backward, autograd_function,
                                                  combined_objective, jsd, layer_norm_backward)
    z, v, y, p, q = normal((4, 5), 1), normal((4, 5), 2), integers(5, (4,), 3), probabilities((4, 5), 4), \
        probabilities((4, 5), 5)
    calls = [
        lambda z, v, y, p, q: combined_objective.distillation_loss(z, v, y, 0.3, 2.0, "additive"),
        lambda z, v, y, p, q: (jsd.jsd(p, q, 0.3),),
        lambda z, v, y, p, q: layer_norm_backward.layer_norm_backward(z, v, q[0, :], 1e-5),
        lambda z, v, y, p, q: attention_backward.attention_backward(z, v, p, q),
        lambda z, v, y, p, q: adamw_step.adamw_step(z, v, p, q, 2, 0.01, 0.9, 0.999, 1e-8, 0.1),
        lambda z, v, y, p, q: (autograd_function.Sigmoid().forward(z),),
    ]
    expected = [[backend.to_numpy(part) for part in call(z, v, y, p, q)] for call in calls]
    monkeypatch.setattr(backend, "xp", lambda: xs)
    strict = [xs.asarray(backend.to_numpy(a), device=backend.device()) for a in (z, v, y, p, q)]
    np = backend.host_xp()
    for call, numbers in zip(calls, expected):
        for part, number in zip(call(*strict), numbers):
            assert np.allclose(backend.to_numpy(part), number, rtol=1e-12, atol=1e-14)


def test_check_text_json_and_gradescope_reports(tmp_path, capsys):
    wrong = tmp_path / "t2.py"
    wrong.write_text(HEADER + MISTAKES["t_squared"][0][1])
    assert main(["exercise", "check", "t_squared", str(wrong), "--isolation", "in-process"]) == 1
    out = capsys.readouterr().out
    assert "  FAIL  loss and gradient against the reference" in out and "checks passed" in out
    assert main(["exercise", "check", "t_squared", get("t_squared").solution_path, "--isolation", "in-process"]) == 0
    assert "4 of 4 checks passed" in capsys.readouterr().out
    results = tmp_path / "results.json"
    assert main(["exercise", "check", "t_squared", str(wrong), "--format", "gradescope", "--out", str(results),
                 "--isolation", "in-process"]) == 1
    report = json.loads(results.read_text())
    assert set(report) == {"score", "output", "tests"} and len(report["tests"]) == 4
    assert all(set(t) >= {"name", "score", "max_score", "status", "output"} for t in report["tests"])
    assert report["score"] == sum(t["score"] for t in report["tests"]) < 4
    assert {t["status"] for t in report["tests"]} <= {"passed", "failed"}
    assert main(["exercise", "check", "t_squared", str(wrong), "--format", "gradescope", "--out", str(results)]) == 2
    assert "exists" in capsys.readouterr().err  # never overwritten
    assert main(["exercise", "check", "t_squared", str(wrong), "--out", str(tmp_path / "no" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_list_json_names_every_stub_and_solution(capsys):
    assert main(["exercise", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listing] == list(NAMES)
    assert all(os.path.isfile(e["stub"]) and os.path.isfile(e["solution"]) and e["title"] for e in listing)


def test_reference_solutions_agree_with_minikd():
    """The references are checked against minikd's own losses, layers, AdamW and PGR, not only against the checks."""
    from minikd.engine import backend
    from minikd.engine.autograd import Tensor
    from minikd.losses import functional as F
    from minikd.nn import layers, optim
    from minikd.recipes.weak_to_strong import pgr as minikd_pgr
    from minikd.tools.exercises.solutions import (adamw_step, attention_backward, combined_objective,
                                                  layer_norm_backward, pgr)
    from minikd.tools.exercises.grading import integers, normal
    np, host = backend.host_xp(), backend.to_numpy
    z, v, y = normal((4, 5), 1), normal((4, 5), 2), integers(5, (4,), 3)
    for form in ("interpolate", "additive"):
        zt = Tensor(z, requires_grad=True)
        loss = F.distillation_loss(zt, v, y, lam=0.3, T=2.0, form=form)
        loss.backward()
        ref_loss, ref_grad = combined_objective.distillation_loss(z, v, y, 0.3, 2.0, form)
        assert np.allclose(loss.item(), float(ref_loss)) and np.allclose(host(zt.grad), host(ref_grad))
    x, g, gamma = normal((3, 6), 4), normal((3, 6), 5), normal((6,), 6)
    xt, gt = Tensor(x, requires_grad=True), Tensor(gamma, requires_grad=True)
    bt = Tensor(normal((6,), 7), requires_grad=True)
    layers.layer_norm(xt, gt, bt).backward(g)
    for mine, theirs in zip(layer_norm_backward.layer_norm_backward(g, x, gamma, 1e-5), (xt.grad, gt.grad, bt.grad)):
        assert np.allclose(host(mine), host(theirs))
    qkv = Tensor(normal((1, 4, 6), 8), requires_grad=True)
    go = normal((1, 4, 2), 9)
    layers.causal_self_attention(qkv, n_head=1).backward(go)
    q, k, w = qkv.data[..., :2], qkv.data[..., 2:4], qkv.data[..., 4:]
    mine = [host(part) for part in attention_backward.attention_backward(q, k, w, go)]
    assert np.allclose(np.concatenate(mine, axis=-1), host(qkv.grad))
    theta = Tensor(normal((3, 2), 10), requires_grad=True)
    opt = optim.AdamW([theta], lr=0.01, weight_decay=0.1)
    xp = backend.xp()
    mine = xp.asarray(theta.data, copy=True)
    m, second = xp.zeros((3, 2), device=backend.device()), xp.zeros((3, 2), device=backend.device())
    for t in (1, 2, 3):
        grad = normal((3, 2), 20 + t)
        theta.grad = grad
        opt.step()
        mine, m, second = adamw_step.adamw_step(mine, grad, m, second, t, 0.01, 0.9, 0.999, 1e-8, 0.1)
    assert np.allclose(host(mine), host(theta.data))
    assert pgr.pgr(0.2, 0.5, 0.8) == minikd_pgr(0.2, 0.5, 0.8)


README_ATTEMPTS = (  # the two versions of soft_term in the README's worked example
    "    return kl, (xp.exp(log_q) - p) / (T * N)",
    "    return T * T * kl, T * (xp.exp(log_q) - p) / N",
)


def test_the_readme_worked_example_prints_what_the_readme_shows(tmp_path, capsys, monkeypatch):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    monkeypatch.chdir(tmp_path)
    assert main(["exercise", "show", "t_squared", "--stub", "t_squared.py"]) == 0
    stub = (tmp_path / "t_squared.py").read_text()
    capsys.readouterr()
    assert main(["exercise", "check", "t_squared", "t_squared.py", "--isolation", "in-process"]) == 1
    assert "0 of 4 checks passed" in capsys.readouterr().out
    body = ("    N = z.shape[0]\n"
            "    log_p = (v - xp.max(v, axis=-1, keepdims=True)) / T\n"
            "    log_p = log_p - xp.log(xp.sum(xp.exp(log_p), axis=-1, keepdims=True))\n"
            "    log_q = (z - xp.max(z, axis=-1, keepdims=True)) / T\n"
            "    log_q = log_q - xp.log(xp.sum(xp.exp(log_q), axis=-1, keepdims=True))\n"
            "    p = xp.exp(log_p)\n"
            "    kl = xp.sum(p * (log_p - log_q)) / N\n")
    for attempt, code in zip(README_ATTEMPTS, (1, 0)):
        (tmp_path / "t_squared.py").write_text(stub.replace(
            '    raise NotImplementedError("soft_term(z, v, T): return (T² · KL, its gradient)")', body + attempt))
        assert main(["exercise", "check", "t_squared", "t_squared.py", "--isolation", "in-process"]) == code
        for line in capsys.readouterr().out.splitlines():
            assert line in readme, line


def test_each_tutorial_ends_by_pointing_at_its_exercises():
    import re
    from minikd.tools.figures import tutorial_paths
    for path in tutorial_paths():
        last = open(path, encoding="utf-8").read().rsplit("# %% [markdown]\n", 1)[1]
        prose = " ".join(line.removeprefix("# ") for line in last.splitlines())
        assert prose.startswith("**Graded exercises.**") and "minikd exercise check" in prose, path
        named = {name for name in NAMES if re.search(rf"\b{name}\b", prose)}
        assert named, path


def test_a_students_exception_or_nan_is_a_failed_check_with_its_line(tmp_path):
    path = tmp_path / "softmax.py"
    path.write_text("from minikd.engine import backend\n"
                    "def softmax(z, T):\n"
                    "    if z.ndim == 1:\n"
                    "        raise ValueError('one axis is not supported')\n"
                    "    return backend.xp().full(z.shape, float('nan'), dtype=z.dtype)\n")
    messages = [r.message for r in grade_file(get("softmax_temperature"), path)]
    assert messages[0] == f"your code raised ValueError: one axis is not supported (line 4 of {path})"
    assert "nan at index (0, 0), expected " in messages[1]


def test_a_student_file_may_import_its_neighbours(tmp_path, monkeypatch):
    (tmp_path / "kl.py").write_text(open(get("kl").solution_path).read())
    path = tmp_path / "t_squared.py"
    path.write_text("from kl import kl\n\ndef soft_term(z, v, T):\n    loss, grad = kl(z, v, T)\n"
                    "    return T * T * loss, T * T * grad\n")
    monkeypatch.delitem(sys.modules, "kl", raising=False)
    before = list(sys.path)
    assert all(r.passed for r in grade_file(get("t_squared"), path))
    assert sys.path == before
    monkeypatch.delitem(sys.modules, "kl", raising=False)


def test_the_readme_section_names_every_exercise():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    section = readme.split("## Coursework: exercises and the grader\n", 1)[1].split("\n## ", 1)[0]
    assert section.lstrip().startswith("Thirteen exercises") and len(NAMES) == 13
    assert all(f"`{name}`" in section for name in NAMES)
    assert readme.index("## Coursework: exercises and the grader") < readme.index("## Tests\n")
