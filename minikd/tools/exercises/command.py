"""``minikd exercise``: list the exercises, show one (and write its stub or notebook), check a student's file.

``check`` prints one line per check (or ``--json``, or Gradescope's results.json) and exits 0 only
when every check passes, 1 when one fails, 2 when the file cannot be graded.
"""

import json
import os

from minikd.tools.exercises.catalog import EXERCISES, NAMES, get, grade, notebook
from minikd.tools.exercises.isolation import grade_file
from minikd.tools.exercises.student import LoadError, load

FORMATS = ("text", "json", "gradescope")
ISOLATIONS = ("subprocess", "in-process")
TIME_LIMIT_S = 10.0


def add_commands(commands):
    parser = commands.add_parser("exercise", help="coursework: list, show and check the exercises")
    sub = parser.add_subparsers(dest="exercise_command", required=True, metavar="ACTION",
                                help="list, show or check")

    listing = sub.add_parser("list", help="the exercises in the tutorials' order")
    listing.add_argument("--json", action="store_true", help="name, title, tutorial, stub and solution path of each")
    listing.set_defaults(run=_list)

    show = sub.add_parser("show", help="print an exercise's statement; optionally write its stub or notebook")
    show.add_argument("name", choices=NAMES, metavar="NAME", help="the exercise (see minikd exercise list)")
    show.add_argument("--stub", metavar="PATH", help="write the stub to PATH for the student to fill in (never overwrites)")
    show.add_argument("--notebook", metavar="PATH",
                      help="write the exercise as a Jupytext percent notebook to PATH (never overwrites)")
    show.set_defaults(run=_show)

    check = sub.add_parser("check", help="grade a student's file: one line per check, exit 0 only when all pass")
    check.add_argument("name", choices=NAMES, metavar="NAME", help="the exercise (see minikd exercise list)")
    check.add_argument("file", help="the student's Python file (the filled-in stub)")
    check.add_argument("--json", action="store_true", help="the report as JSON (same as --format json)")
    check.add_argument("--format", choices=FORMATS, default="text",
                       help="text, json, or gradescope (the results.json Gradescope's autograder reads)")
    check.add_argument("--out", metavar="PATH", help="write the report to PATH instead of printing it (never overwrites)")
    check.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, metavar="SECONDS",
                       help="time allowed per check")
    check.add_argument("--isolation", choices=ISOLATIONS, default="subprocess",
                       help="run the student's file in a worker process (stops any endless loop, survives crashes) "
                            "or in this process (faster; the SIGALRM watchdog stops Python loops only)")
    check.set_defaults(run=_check)


def _list(args):
    if args.json:
        print(json.dumps([{"name": e.name, "title": e.title, "tutorial": e.tutorial, "writes": e.signature(),
                           "stub": e.stub_path, "solution": e.solution_path} for e in EXERCISES], indent=2))
        return 0
    width = max(len(e.name) for e in EXERCISES)
    for e in EXERCISES:
        print(f"{e.name:<{width}}  {e.tutorial[:2]}  {e.title}")
    return 0


def _refuse_existing(flag, path):
    """Checked before any work: the file must not exist (nothing is overwritten) and its folder must."""
    if path is None:
        return
    if os.path.exists(path):
        raise ValueError(f"{flag} {path} exists; choose another path or remove it (minikd never overwrites your work)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: the folder {folder} does not exist")


def _write(path, text):
    with open(path, "x", encoding="utf-8") as f:  # "x": fail rather than overwrite
        f.write(text)


def _show(args):
    exercise = get(args.name)
    _refuse_existing("--stub", args.stub)
    _refuse_existing("--notebook", args.notebook)
    print(f"{exercise.statement()}\n\nWrite: {exercise.signature()}   (after tutorial {exercise.tutorial})")
    if args.stub:
        with open(exercise.stub_path, encoding="utf-8") as f:
            _write(args.stub, f.read())
        print(f"\nwrote the stub to {args.stub}; fill it in, then: minikd exercise check {exercise.name} {args.stub}")
    if args.notebook:
        _write(args.notebook, notebook(exercise))
        print(f"\nwrote the notebook to {args.notebook} (open it with Jupytext, or run `jupytext --to ipynb` on it)")
    return 0


def text_report(exercise, path, results):
    lines = [f"{exercise.name}: {exercise.title} ({path})"]
    for r in results:
        lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.name}" + ("" if r.passed else f"\n        {r.message}"))
    passed = sum(r.passed for r in results)
    lines.append(f"{passed} of {len(results)} checks passed" + (": well done" if passed == len(results) else ""))
    return "\n".join(lines)


def gradescope_report(results):
    """Gradescope's results.json (the shape Otter-Grader writes): one test per check, one point each."""
    tests = [{"name": r.name, "score": float(r.passed), "max_score": 1.0, "status": "passed" if r.passed else "failed",
              "output": r.message} for r in results]
    passed = sum(r.passed for r in results)
    return {"score": float(passed), "output": f"{passed} of {len(results)} checks passed", "tests": tests}


def _check(args):
    exercise = get(args.name)
    fmt = "json" if args.json else args.format
    if not args.time_limit > 0:
        raise ValueError(f"--time-limit must be > 0 seconds, got {args.time_limit!r}")
    _refuse_existing("--out", args.out)
    path = os.path.abspath(args.file)
    try:
        if args.isolation == "subprocess":
            results = grade_file(exercise, path, args.time_limit)
        else:
            results = grade(exercise, load(exercise, path, args.time_limit), args.time_limit, path)
    except LoadError as err:
        raise ValueError(str(err)) from None
    if fmt == "text":
        report = text_report(exercise, args.file, results)
    elif fmt == "json":
        report = json.dumps({"exercise": exercise.name, "file": args.file, "passed": all(r.passed for r in results),
                             "checks": [r.to_dict() for r in results]}, indent=2)
    else:
        report = json.dumps(gradescope_report(results), indent=2)
    if args.out:
        _write(args.out, report + "\n")
    else:
        print(report)
    return 0 if all(r.passed for r in results) else 1
