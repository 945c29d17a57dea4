"""The array backend: the one place that imports NumPy or CuPy.

Every other module asks this one for the active array module (``xp()``), the default float
dtype and seeded random generators, so the whole library switches between CPU and GPU here.
"""

import contextlib
import ctypes
import ctypes.util
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy
import threadpoolctl

_CUDA_HINT = (
    'install CuPy with the extra that matches your CUDA toolkit: pip install -e ".[cuda12]" '
    'or pip install -e ".[cuda13]"'
)
NAMES = ("numpy", "cupy")  # the backends ``use`` accepts
_FLOAT_DTYPES = {"float32": numpy.float32, "float64": numpy.float64}

_state = {"name": "numpy", "xp": numpy, "dtype": numpy.float32, "pool": None, "environment_error": None}


def _load_cupy():
    """Import CuPy and make sure a CUDA device answers; raise a RuntimeError that says what to do."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(f"backend 'cupy' was requested but CuPy is not installed; {_CUDA_HINT}") from err
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises its own CUDARuntimeError / driver errors here
        raise RuntimeError(f"backend 'cupy' was requested but CUDA is unusable ({err}); {_CUDA_HINT}") from err
    if n_devices == 0:
        raise RuntimeError(f"backend 'cupy' was requested but no CUDA device was found; {_CUDA_HINT}")
    return cupy


def use(name):
    """Select the array module: ``"numpy"`` (CPU) or ``"cupy"`` (CUDA). Returns the module."""
    if name == "numpy":
        module = numpy
    elif name == "cupy":
        module = _load_cupy()
    else:
        raise ValueError(f"backend must be one of {', '.join(map(repr, NAMES))}; got {name!r}")
    _state.update(name=name, xp=module, environment_error=None)
    return module


def xp():
    """The active array module (``numpy`` or ``cupy``)."""
    return _state["xp"]


def name():
    """The active backend's name: ``"numpy"`` or ``"cupy"``."""
    return _state["name"]


def default_dtype():
    """The float dtype new tensors get (float32 unless changed with ``set_default_dtype``)."""
    return _state["dtype"]


def set_default_dtype(dtype):
    """Set the default float dtype: ``"float32"`` or ``"float64"`` (for gradient checks)."""
    key = numpy.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    _state["dtype"] = _FLOAT_DTYPES[key]


@contextlib.contextmanager
def default_dtype_as(dtype):
    """Context manager: use ``dtype`` as the default float dtype inside the block."""
    previous = _state["dtype"]
    set_default_dtype(dtype)
    try:
        yield
    finally:
        _state["dtype"] = previous


def is_float_dtype(dtype):
    """True for floating-point dtypes."""
    return numpy.dtype(dtype).kind == "f"


def is_int_dtype(dtype):
    """True for signed or unsigned integer dtypes."""
    return numpy.dtype(dtype).kind in "iu"


def asarray(x, dtype=None):
    """Convert ``x`` to an array of the active backend without crossing devices.

    Python scalars and lists are accepted; an array of the *other* backend is refused with a
    TypeError, since a silent copy between host and device hides a slow transfer.
    """
    module = _state["xp"]
    if isinstance(x, numpy.ndarray) and module is not numpy:
        raise TypeError(
            "got a NumPy array while the active backend is 'cupy'; move it with cupy.asarray(x) "
            "or switch with minikd.engine.backend.use('numpy')"
        )
    if type(x).__module__.startswith("cupy") and module is numpy:
        raise TypeError(
            "got a CuPy array while the active backend is 'numpy'; move it with "
            "minikd.engine.backend.to_numpy(x) or switch with minikd.engine.backend.use('cupy')"
        )
    python_data = isinstance(x, (float, list, tuple)) and not isinstance(x, numpy.generic)  # np.float64 is a float
    if dtype is None and python_data:
        arr = module.asarray(x)
        return arr.astype(_state["dtype"]) if arr.dtype.kind == "f" else arr
    return module.asarray(x, dtype=dtype)


def to_numpy(x):
    """A NumPy copy (or view) of an array from either backend, for printing, plotting and saving."""
    if isinstance(x, numpy.ndarray):
        return x
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return numpy.asarray(x)


def unravel_index(flat_index, shape):
    """The multi-index, as a tuple of Python ints, of element ``flat_index`` in an array of ``shape``."""
    return tuple(int(i) for i in numpy.unravel_index(int(flat_index), shape))


def from_numpy(x):
    """An explicit copy of a NumPy array (or Python data) into the active backend."""
    return _state["xp"].asarray(x)


def host_xp():
    """The host array module (NumPy), for data generated on the CPU and for files; move with ``from_numpy``."""
    return numpy


def _seed_sequence(seed, keys):
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}: every random draw in minikd takes a seed")
    return numpy.random.SeedSequence([int(seed), *(int(k) for k in keys)]) if keys else int(seed)


def rng(seed, *keys):
    """A seeded random generator of the active backend (same seed and keys, same numbers on CPU).

    ``keys`` (non-negative ints, e.g. a step number) derive independent streams from one seed, so a
    draw at step t never depends on the draws before it: resuming at step t repeats it exactly.
    """
    seq = _seed_sequence(seed, keys)
    if _state["name"] == "cupy" and keys:
        seq = int(seq.generate_state(1)[0])
    return _state["xp"].random.default_rng(seq)


def host_rng(seed, *keys):
    """Like ``rng`` but always a NumPy generator: the built-in corpora are the same on CPU and GPU."""
    return numpy.random.default_rng(_seed_sequence(seed, keys))


def num_threads():
    """minikd's worker threads (``map_blocks``): ``$MINIKD_NUM_THREADS`` (a positive integer), else the
    CPU cores this process may run on."""
    text = os.environ.get("MINIKD_NUM_THREADS", "").strip()
    if not text:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"MINIKD_NUM_THREADS must be a positive integer, got {text!r}")
    return int(text)


def limit_blas_threads(limit=1):
    """Run the BLAS library (matmuls) on ``limit`` threads, set through threadpoolctl.

    minikd's own pool (``num_threads()``) does the parallel work; BLAS threads beside it would ask
    for more threads than there are cores, and OpenBLAS's idle threads spin for a while before they
    sleep, time a second busy process on the same cores needs. Process-wide: the ``minikd`` command
    calls it, a library import never does.
    """
    threadpoolctl.threadpool_limits(limits=limit, user_api="blas")


def map_blocks(fn, blocks):
    """``[fn(b) for b in blocks]``, with the blocks run on ``num_threads()`` worker threads under NumPy.

    NumPy releases the GIL inside its array operations, so independent row blocks of one big
    array op run in parallel on threads. Under CuPy the GPU is already parallel: the blocks run
    in order. Results come back in the blocks' order, so sums over them are reproducible.
    """
    blocks = list(blocks)
    if _state["name"] != "numpy" or len(blocks) < 2:
        return [fn(b) for b in blocks]
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="minikd")
    return list(_state["pool"].map(fn, blocks))


def reuse_freed_memory(mmap_threshold=32 << 20, trim_threshold=512 << 20):
    """Ask glibc's malloc to keep freed array buffers for reuse instead of handing them back to the OS.

    By default glibc gives every buffer above ~128 KiB its own mmap and unmaps it when freed, so
    each fresh temporary of a training step costs page faults, which take longer than the
    arithmetic on it (``minikd bench train-step`` measures the difference). This raises both
    thresholds for the whole process; the ``minikd`` command calls it, a library import never does.
    Returns True when applied (Linux with glibc), False elsewhere.
    """
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path) if path else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def ignore_float_errors():
    """Context manager silencing NumPy's overflow/invalid warnings (for code that checks its result itself)."""
    if _state["name"] == "numpy":
        return numpy.errstate(all="ignore")
    return contextlib.nullcontext()


def synchronize():
    """Wait for queued device work (a no-op on NumPy); call before reading a timer."""
    if _state["name"] == "cupy":
        _state["xp"].cuda.get_current_stream().synchronize()


def environment_error():
    """Why ``$MINIKD_BACKEND`` could not be used at import (None when it could, or once ``use`` was called)."""
    return _state["environment_error"]


def _from_environment():
    """Use ``$MINIKD_BACKEND``; a bad or unavailable one leaves NumPy active with a warning, so that
    ``import minikd`` and ``minikd --help`` still work (the ``minikd`` command refuses to run on it)."""
    requested = os.environ.get("MINIKD_BACKEND", "numpy").strip().lower() or "numpy"
    try:
        use(requested)
    except (ValueError, RuntimeError) as err:
        _state["environment_error"] = f"MINIKD_BACKEND={requested!r} cannot be used: {err}"
        warnings.warn_explicit(f"{_state['environment_error']}; using numpy", RuntimeWarning,  # one line, no source
                               filename="MINIKD_BACKEND", lineno=0, module=__name__)


_from_environment()
