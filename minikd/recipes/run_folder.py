"""Run folders: one run per folder, one writer at a time, and a resume that is exact or refused.

A run folder holds ``run.json`` (the command, its settings, whether it finished) beside the run's own
files. ``claim`` refuses a folder holding another or a finished run unless told to ``resume`` or
``overwrite`` it, refuses ``--out`` overlapping an input (the teacher), and holds an operating-system
lock on the folder (``filelock``: it dies with its process, so a killed run never leaves it stuck).
"""

import contextlib
import hashlib
import json
import os
import shutil

import filelock

RUN_FILE = "run.json"
LOCK_FILE = ".minikd.lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (taken, finished, another run's, locked, not a folder)."""


def file_identity(path):
    """``{"path", "sha256"}`` of an input file (e.g. the teacher's checkpoint): resume checks it is unchanged."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": os.path.realpath(path), "sha256": digest.hexdigest()}


def check_apart(out, inputs):
    """``out`` may not equal, lie inside or contain an input folder (``{flag: path}``), nor hold an input file."""
    folder = os.path.realpath(out)
    for flag, path in inputs.items():
        source = os.path.realpath(path)
        common = os.path.commonpath([folder, source])
        if os.path.isdir(source):
            where = "is" if folder == source else "lies inside" if common == source else "contains" \
                if common == folder else None
        else:
            where = "contains" if common == folder else None
        if where:
            raise RunFolderError(f"--out {out!r} {where} the folder of {flag} {path!r}: "
                                 f"a run never writes beside its inputs; choose another --out")


def differences(recorded, wanted, prefix=""):
    """The fields where two settings dicts differ, as ``["name: was X, now Y", ...]`` (nested names dotted)."""
    found = []
    for key in sorted(set(recorded) | set(wanted)):
        old, new = recorded.get(key, "(absent)"), wanted.get(key, "(absent)")
        if isinstance(old, dict) and isinstance(new, dict):
            found += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key}: was {old!r}, now {new!r}")
    return found


def _read_run_file(folder):
    path = os.path.join(folder, RUN_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record, dict) or not {"command", "settings", "finished"} <= set(record):
            raise ValueError("missing fields")
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path!r} is damaged ({err}); replace the run with --overwrite") from None
    return record


def _write_run_file(folder, record):
    path = os.path.join(folder, RUN_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(record, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _contents(folder):
    return sorted(name for name in os.listdir(folder) if name != LOCK_FILE) if os.path.isdir(folder) else []


def _check_state(folder, out, command, settings, resume, overwrite):
    """Read-only: is this folder free for the run? Returns the folder's run record (or None)."""
    names = _contents(folder)
    if not names:
        if resume:
            raise RunFolderError(f"--resume: {out!r} holds no run to continue")
        return None
    if RUN_FILE not in names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise RunFolderError(f"--out {out!r} holds files that are not a minikd run ({shown}); "
                             f"choose an empty or new folder")
    record = _read_run_file(folder)
    if overwrite:
        return record
    state = "finished" if record["finished"] else "unfinished"
    if not resume:
        raise RunFolderError(f"--out {out!r} already holds a{'n' if state[0] == 'u' else ''} {state} "
                             f"'minikd {record['command']}' run; continue it with --resume, replace it with "
                             f"--overwrite, or choose another --out")
    if record["command"] != command:
        raise RunFolderError(f"--resume: {out!r} holds a 'minikd {record['command']}' run, not 'minikd {command}'")
    if record["finished"]:
        raise RunFolderError(f"--resume: the run in {out!r} is finished; nothing to continue "
                             f"(--overwrite runs it again)")
    changed = differences(record["settings"], settings)
    if changed:
        raise RunFolderError(f"--resume: the settings differ from the run in {out!r}, so it cannot continue "
                             f"exactly: {'; '.join(changed)}")
    return record


def _clear(folder):
    """Remove the old run's files (the folder holds ``run.json``, so every file in it is a minikd run's)."""
    for name in _contents(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _lock(folder, out):
    lock = filelock.FileLock(os.path.join(folder, LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise RunFolderError(f"--out {out!r} is in use: another minikd process is writing to it "
                             f"(wait for it to finish, or choose another --out)") from None
    return lock


@contextlib.contextmanager
def claim(out, command, settings, resume=False, overwrite=False, inputs=None):
    """Hold the run folder ``out`` for the block: checked, locked, ``run.json`` written; marked finished
    when the block ends normally.

    ``settings`` (JSON-serialisable) must equal the recorded ones on ``resume``; ``overwrite`` first
    removes the old run's files; ``inputs`` (``{flag: path}``) may not overlap ``out``. Every check
    reads only, and happens before the first write. Yields the folder's absolute path.
    """
    out = os.fspath(out) if isinstance(out, os.PathLike) else out
    if not isinstance(out, str) or not out.strip():
        raise ValueError(f"--out must name a folder, got {out!r}")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run, or replace it")
    settings = json.loads(json.dumps(settings))  # tuples become lists, as they will be read back
    folder = os.path.abspath(out)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise RunFolderError(f"--out {out!r} is an existing file, not a folder")
    check_apart(out, inputs or {})
    lock = _lock(folder, out) if os.path.exists(os.path.join(folder, LOCK_FILE)) else None
    try:
        _check_state(folder, out, command, settings, resume, overwrite)
        if lock is None:
            os.makedirs(folder, exist_ok=True)
            lock = _lock(folder, out)
            _check_state(folder, out, command, settings, resume, overwrite)  # again, now that no one else can write
        if overwrite:
            _clear(folder)
        record = {"command": command, "settings": settings, "finished": False}
        _write_run_file(folder, record)
        yield folder
        _write_run_file(folder, {**record, "finished": True})
    finally:
        if lock is not None:
            lock.release()
