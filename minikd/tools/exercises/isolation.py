"""Grading in a worker process: the student's file runs in ``python -m minikd.tools.exercises.isolation``,
never in the grader, so an endless loop in C, ``os._exit`` or a crash costs one check, not the report.

The worker imports the file once and runs the checks in order, each under the SIGALRM watchdog,
writing one JSON line per result on its own copy of stdout (the student's prints go to /dev/null).
The parent waits for each line at most twice the time limit plus a second; on silence (the watchdog
could not interrupt: a long C call, a student's ``except BaseException``) it kills the worker, records
that check as timed out and starts a new worker at the next check.
"""

import json
import os
import queue
import subprocess
import sys
import threading

from minikd.tools.exercises.grading import Result, run_check, timeout_message
from minikd.tools.exercises.student import LoadError, check_file, load

STARTUP_S = 30.0  # for the worker to import minikd and the student's file, beyond the time limit


def _patience(time_limit):
    """How long the parent waits for a check's result: the worker's own watchdog answers first when it can."""
    return 2.0 * time_limit + 1.0


def _reader(stream, lines):
    for line in stream:
        lines.put(line)
    lines.put(None)  # end of file: the worker has ended


def grade_file(exercise, path, time_limit):
    """The Results of every check of ``exercise`` on the file ``path``; LoadError if it cannot be graded."""
    check_file(path)  # a missing file or a syntax error is reported before any process starts
    names = [check.name for check in exercise.checks()]
    results = []
    while len(results) < len(names):
        start = len(results)
        worker = subprocess.Popen(
            [sys.executable, "-m", "minikd.tools.exercises.isolation", exercise.name, path, str(time_limit), str(start)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines = queue.Queue()
        threading.Thread(target=_reader, args=(worker.stdout, lines), daemon=True).start()
        try:
            _wait_until_loaded(lines, path, time_limit, worker)
            for name in names[start:]:
                try:
                    line = lines.get(timeout=_patience(time_limit))
                except queue.Empty:  # the worker's watchdog could not stop it: a long C call, a blocked signal
                    results.append(Result(name, False, timeout_message(time_limit), time_limit))
                    break
                if line is None:
                    code = worker.wait()
                    results.append(Result(name, False, f"your code ended the grading process (exit status {code})", 0.0))
                    break
                results.append(Result(**json.loads(line)))
        finally:
            worker.kill()
            worker.wait()
    return results


def _wait_until_loaded(lines, path, time_limit, worker):
    """The worker's first line says whether the file loaded; a LoadError when it did not."""
    try:
        first = lines.get(timeout=_patience(time_limit) + STARTUP_S)
    except queue.Empty:
        raise LoadError(f"importing {path} did not finish within {time_limit:g} s") from None
    if first is None:
        raise LoadError(f"the grading process for {path} ended before it started (exit status {worker.wait()})")
    status = json.loads(first)
    if "error" in status:
        raise LoadError(status["error"])


def _worker(name, path, time_limit, start):
    """The worker's side: load once, then one JSON line per check from ``start`` on."""
    from minikd.tools.exercises.catalog import get

    protocol = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # output written by C code, or print() before redirect, goes nowhere
    sys.stdout = open(os.devnull, "w")
    exercise = get(name)
    try:
        obj = load(exercise, path, time_limit)
    except LoadError as err:
        protocol.write(json.dumps({"error": str(err)}) + "\n")
        protocol.flush()
        return
    protocol.write(json.dumps({"loaded": True}) + "\n")
    protocol.flush()
    for check in exercise.checks()[start:]:
        result = run_check(check, obj, time_limit, path)
        protocol.write(json.dumps({"name": result.name, "passed": result.passed, "message": result.message,
                                   "seconds": result.seconds}) + "\n")
        protocol.flush()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
