"""Loading a student's file: the grader's own errors (no file, a syntax error, no such function, a wrong
signature, an import that fails) become one-line ``LoadError`` messages, never a traceback.
"""

import contextlib
import io
import os
import sys
import types

from minikd.tools.exercises.grading import TimeLimit, watchdog


class LoadError(ValueError):
    """The student's file cannot be graded; the message is one line that says why."""


def check_file(path):
    """The source of ``path`` compiled (nothing of it run yet); LoadError for a missing file or a syntax error."""
    if not os.path.isfile(path):
        raise LoadError(f"no such file: {path}")
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    try:
        return compile(source, path, "exec")
    except SyntaxError as err:
        raise LoadError(f"syntax error in {path}, line {err.lineno}: {err.msg}") from None


def load(exercise, path, time_limit=10.0):
    """Run the student's file once (prints captured, under the watchdog) and return the object it defines."""
    code = check_file(path)
    module = types.ModuleType(f"minikd_student_{exercise.name}")
    module.__file__ = path
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # so that the file can import the student's other solutions beside it
    try:
        with watchdog(time_limit), contextlib.redirect_stdout(io.StringIO()):
            exec(code, module.__dict__)
    except TimeLimit:
        raise LoadError(f"importing {path} did not finish within {time_limit:g} s") from None
    except (Exception, SystemExit) as err:
        line = next((f" (line {tb.tb_lineno})" for tb in _frames(err) if tb.tb_frame.f_code.co_filename == path), "")
        text = str(err).splitlines()[0] if str(err) else ""
        raise LoadError(f"importing {path} raised {type(err).__name__}: {text}{line}") from None
    finally:
        sys.path.remove(folder)
    obj = module.__dict__.get(exercise.obj)
    if obj is None:
        raise LoadError(f"{path} defines no {exercise.obj}; the exercise {exercise.name!r} asks for {exercise.signature()}")
    reason = exercise.signature_error(obj)
    if reason:
        raise LoadError(f"{path}: {reason}")
    return obj


def _frames(err):
    tb = err.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    return reversed(frames)
