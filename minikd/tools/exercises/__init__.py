"""Coursework: exercises a student completes, and a grader that says what is wrong.

Each exercise has a statement and a stub (``stubs/``), a reference solution (``solutions/``) and
checks (``checks_*.py``) that compare the student's answer with the reference on seeded inputs,
run minikd's gradcheck on it, test the limits and invariances, and name known mistakes.
``minikd exercise list | show | check`` is the command line (``command.py``).
"""

from minikd.tools.exercises.catalog import EXERCISES, NAMES, get, grade


def check_in_notebook(name, obj, time_limit=10.0):
    """Grade ``obj`` (the function or class a notebook cell defined) in this process; print one line per check.

    Returns True when every check passes. An endless loop is stopped by the SIGALRM watchdog
    (Jupyter runs cells on the kernel's main thread).
    """
    from minikd.tools.exercises.command import text_report

    exercise = get(name)
    reason = exercise.signature_error(obj)
    if reason:
        print(reason)
        return False
    results = grade(exercise, obj, time_limit)
    print(text_report(exercise, "this notebook", results))
    return all(r.passed for r in results)


__all__ = ["EXERCISES", "NAMES", "check_in_notebook", "get", "grade"]
