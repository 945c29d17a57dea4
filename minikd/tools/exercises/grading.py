"""The grader's core: a check runs the student's code on seeded inputs and names what is wrong.

A check is a function of the student's object that returns when it passes and raises ``Failed``
with a one-line diagnosis when it does not; ``run_check`` turns whatever else the student's code
does (an exception, an endless loop, prints) into a failed result instead of a crash.
"""

import contextlib
import io
import math
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass

from minikd.engine import backend
from minikd.engine.autograd import Tensor

# (rtol, atol) for comparing the student's values with the reference's, by dtype: float64 checks are
# tight (two correct formulas agree to ~1e-13), float32 ones allow its ~1e-7 rounding per operation.
TOLERANCES = {"float64": (1e-7, 1e-10), "float32": (1e-4, 1e-6)}


class Failed(Exception):
    """A check failed; the message says where and, when it can, why."""


class TimeLimit(BaseException):
    """Raised by the watchdog; a BaseException so a student's ``except Exception`` does not swallow it."""


@dataclass(frozen=True)
class Check:
    """One named check: ``run(student)`` returns when it passes and raises Failed when it does not."""

    name: str
    run: object


@dataclass
class Result:
    name: str
    passed: bool
    message: str  # "ok", or what is wrong
    seconds: float

    def to_dict(self):
        return {"name": self.name, "passed": self.passed, "message": self.message, "seconds": round(self.seconds, 4)}


def can_stop_endless_loops():
    """True where the in-process watchdog works: SIGALRM exists (Unix) and this is the main thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def watchdog(seconds):
    """Raise TimeLimit inside the block after ``seconds`` (a no-op where SIGALRM cannot be used).

    The alarm interrupts Python code between bytecodes and a ``time.sleep``, not one long C call:
    the subprocess runner (``isolation.py``) kills its worker for those.
    """
    if not can_stop_endless_loops():
        yield
        return

    def stop(signum, frame):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timeout_message(seconds):
    return f"stopped at the time limit of {seconds:g} s: an endless loop, or far too slow"


def _where(err, student_file):
    """' (line N of FILE)' for the last frame of the traceback in the student's file, else ''."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == student_file]
    return f" (line {frames[-1].lineno} of {frames[-1].filename})" if frames else ""


def run_check(check, student, time_limit, student_file=None):
    """Run one check under the watchdog with the student's prints and warnings captured; a Result."""
    start = time.perf_counter()
    try:
        with watchdog(time_limit), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
                backend.ignore_float_errors():
            warnings.simplefilter("ignore")  # an overflow shows up as the non-finite value it produced
            check.run(student)
        passed, message = True, "ok"
    except Failed as err:
        passed, message = False, str(err)
    except TimeLimit:
        passed, message = False, timeout_message(time_limit)
    except SystemExit as err:  # sys.exit() in the student's code must not end the grader
        passed, message = False, f"your code called sys.exit({err.code!r}){_where(err, student_file)}"
    except NotImplementedError as err:
        passed, message = False, f"not implemented yet: your code raised NotImplementedError{_where(err, student_file)}"
    except Exception as err:  # the student's code raised: a failed check, never a crash of the grader
        text = str(err).splitlines()[0] if str(err) else ""
        passed, message = False, f"your code raised {type(err).__name__}: {text}{_where(err, student_file)}"
    return Result(check.name, passed, message, time.perf_counter() - start)


# ---- inputs ---------------------------------------------------------------------------------------
def normal(shape, seed, scale=1.0):
    """Seeded standard-normal float64 values on the active backend (drawn on the host: same on CPU and GPU)."""
    return backend.from_numpy(backend.host_rng(seed).standard_normal(shape) * scale)


def integers(high, shape, seed):
    """Seeded integers in [0, high) on the active backend."""
    return backend.from_numpy(backend.host_rng(seed).integers(0, high, size=shape))


def probabilities(shape, seed):
    """Seeded rows of a softmax of normal logits (every entry > 0), on the active backend."""
    xp = backend.xp()
    z = normal(shape, seed, 1.5)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def copy(x):
    """A copy, so that a student's in-place edit cannot change the grader's inputs."""
    return backend.xp().asarray(x, copy=True)


# ---- comparing -------------------------------------------------------------------------------------
def host(value, label):
    """The student's value as a NumPy float array (a Tensor's data, a scalar, an array of either backend)."""
    np = backend.host_xp()
    if isinstance(value, Tensor):
        value = value.data
    if value is None:
        raise Failed(f"{label}: your code returned None (is a `return` missing?)")
    try:
        array = np.asarray(backend.to_numpy(value))
    except Exception:
        raise Failed(f"{label}: expected an array, got {type(value).__name__}") from None
    if array.dtype.kind not in "fiub":
        raise Failed(f"{label}: expected numbers, got an array of {array.dtype}")
    return array


def unpack(value, names):
    """Split a returned tuple into its named parts, with a clear failure when it is not one."""
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        got = f"a {type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise Failed(f"return the tuple ({', '.join(names)}); got {got}")
    return value


def _fmt(x):
    return f"{x:.8g}"


def _close(expected, obtained, rtol, atol):
    np = backend.host_xp()
    return expected.shape == obtained.shape and bool(np.all(np.abs(obtained - expected) <= atol + rtol * np.abs(expected)))


def _factor(expected, obtained, rtol):
    """c when obtained = c·expected for one constant c (to rtol relative, at least 1e-6), else None."""
    np = backend.host_xp()
    scale = float(np.sum(expected * expected))
    if scale == 0.0:
        return None
    c = float(np.sum(expected * obtained)) / scale
    residual = float(np.sqrt(np.sum((obtained - c * expected) ** 2)))
    return c if residual <= max(rtol, 1e-6) * math.sqrt(scale) * max(1.0, abs(c)) else None


def expect(label, expected, obtained, hints=(), factors=None, dtype=None, nonfinite_hint=None, shape_hint=None,
           tol=None):
    """Fail unless ``obtained`` matches ``expected`` within the dtype's tolerance, naming the worst element.

    On a mismatch the diagnosis is the first that applies: ``hints``, pairs (what a known wrong
    answer returns, what that mistake is); a transpose; ``factors`` {c: message} when obtained = c·expected
    (c = −1 is "wrong sign" unless named); another constant factor. ``nonfinite_hint`` explains a NaN/inf;
    ``tol`` = (rtol, atol) replaces the dtype's tolerance (for limits, which hold only approximately).
    """
    np = backend.host_xp()
    expected = np.asarray(backend.to_numpy(expected), dtype="float64")
    array = host(obtained, label)
    dtype = dtype or "float64"
    if dtype == "float32" and array.dtype != np.float32:
        raise Failed(f"{label}: returned {array.dtype} for float32 input: keep the input's dtype")
    rtol, atol = tol or TOLERANCES[dtype]
    array = array.astype("float64")
    if array.shape != expected.shape and array.size == expected.size == 1:
        array = array.reshape(expected.shape)
    if array.shape != expected.shape:
        transposed = array.ndim >= 2 and array.shape == expected.shape[:-2] + expected.shape[-2:][::-1]
        why = " (transposed)" if transposed else (f": {shape_hint}" if shape_hint else "")
        raise Failed(f"{label}: shape {array.shape}, expected {expected.shape}{why}")
    bad = ~np.isfinite(array)
    if bad.any():
        index = backend.unravel_index(int(np.argmax(bad)), array.shape)
        why = f": {nonfinite_hint}" if nonfinite_hint else ""
        raise Failed(f"{label}: {_fmt(array[index])} at index {index}, expected {_fmt(expected[index])}{why}")
    if _close(expected, array, rtol, atol):
        return
    ratio = np.abs(array - expected) / (atol + rtol * np.abs(expected))
    index = backend.unravel_index(int(np.argmax(ratio)), array.shape)
    at = f"worst at index {index}: " if array.ndim else ""
    where = f"{label}: {at}expected {_fmt(expected[index])}, got {_fmt(array[index])}"
    raise Failed(f"{where}; {diagnosis}" if (diagnosis := _diagnose(expected, array, hints, factors, rtol, atol))
                 else where)


def _diagnose(expected, obtained, hints, factors, rtol, atol):
    np = backend.host_xp()
    for wrong, message in hints:
        wrong = np.asarray(backend.to_numpy(wrong), dtype="float64")
        if wrong.shape == obtained.shape and _close(wrong, obtained, max(rtol, 1e-6), atol):
            return message
    if expected.ndim >= 2 and expected.shape[-1] == expected.shape[-2]:
        if _close(np.swapaxes(expected, -1, -2), obtained, max(rtol, 1e-6), atol):
            return "the transpose of the expected matrix"
    c = _factor(expected, obtained, rtol)
    if c is None:
        return None
    rel_tol = max(rtol, 1e-5)
    for value, message in (factors or {}).items():
        if math.isclose(c, value, rel_tol=rel_tol):
            return message
    if math.isclose(c, -1.0, rel_tol=rel_tol):
        return "wrong sign"
    return f"off by a constant factor {c:.6g}" if not math.isclose(c, 1.0, rel_tol=rel_tol) else None


def expect_raises(label, error, call, hint=None):
    """Fail unless ``call()`` raises ``error`` (a type); name what it did instead, and why that is wrong."""
    why = f"; {hint}" if hint else ""
    try:
        value = call()
    except error:
        return
    except Exception as err:
        raise Failed(f"{label}: expected {error.__name__}, got {type(err).__name__}: {err}{why}") from None
    raise Failed(f"{label}: expected {error.__name__}, but your code returned {value!r}{why}")
