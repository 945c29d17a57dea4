"""The array backend: the one place that imports NumPy, CuPy or the array-API packages.

Every other module asks this one for the active array namespace (``xp()``, the Python array API
standard), the device, the default float dtype and seeded random generators, so the whole library
switches here between NumPy (CPU), CuPy (CUDA) and array-api-strict's virtual device (tests).
"""

import contextlib
import ctypes
import ctypes.util
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import array_api_compat.numpy as numpy_namespace
import numpy
import threadpoolctl

_CUDA_HINT = (
    'install CuPy with the extra that matches your CUDA toolkit: pip install -e ".[cuda12]" '
    'or pip install -e ".[cuda13]"'
)
_STRICT_HINT = 'install the test extra: pip install -e ".[dev]" (it brings array-api-strict)'
NAMES = ("numpy", "cupy", "strict")  # the backends ``use`` accepts
_FLOAT_DTYPES = {"float32": numpy.float32, "float64": numpy.float64}

# xp: the array namespace (the array API standard); device: where new arrays are made (None: the default)
_state = {"name": "numpy", "xp": numpy_namespace, "device": None, "dtype": "float32", "pool": None, "fast": True,
          "environment_error": None}
_host_reads = {"transfers": 0, "syncs": 0}  # counted by ``to_numpy`` and, under strict, by scalar reads


def _load_cupy():
    """Import CuPy and make sure a CUDA device answers; raise a RuntimeError that says what to do."""
    try:
        import array_api_compat.cupy as cupy_namespace
        import cupy
    except ImportError as err:
        raise RuntimeError(f"backend 'cupy' was requested but CuPy is not installed; {_CUDA_HINT}") from err
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises its own CUDARuntimeError / driver errors here
        raise RuntimeError(f"backend 'cupy' was requested but CUDA is unusable ({err}); {_CUDA_HINT}") from err
    if n_devices == 0:
        raise RuntimeError(f"backend 'cupy' was requested but no CUDA device was found; {_CUDA_HINT}")
    return cupy_namespace, None


def _load_strict():
    """array-api-strict on its virtual device ``device1``: a CPU stand-in for a GPU that refuses
    conversion to NumPy (RuntimeError), arithmetic with NumPy arrays (TypeError) and with arrays on
    another device (ValueError), and offers only the standard's functions."""
    try:
        import array_api_strict
    except ImportError as err:
        raise RuntimeError(f"backend 'strict' was requested but array-api-strict is not installed; "
                           f"{_STRICT_HINT}") from err
    _count_strict_scalar_reads(type(array_api_strict.asarray(0.0)))
    return array_api_strict, array_api_strict.Device("device1")


def _count_strict_scalar_reads(array_type):
    """Make ``float(x)``, ``int(x)``, ``bool(x)`` and ``x.__index__()`` of a strict array on
    ``device1`` count as a synchronisation (on CuPy each of these waits for the GPU)."""
    if getattr(array_type, "_minikd_counted", False):
        return
    for dunder in ("__float__", "__int__", "__bool__", "__index__", "__complex__"):
        read = getattr(array_type, dunder)

        def counted(self, _read=read):
            if self.device == _state["device"]:
                _host_reads["syncs"] += 1
            return _read(self)

        setattr(array_type, dunder, counted)
    array_type._minikd_counted = True


def use(name):
    """Select the backend: ``"numpy"`` (CPU), ``"cupy"`` (CUDA) or ``"strict"`` (array-api-strict's
    virtual device, for tests). Returns the array namespace."""
    if name == "numpy":
        module, device = numpy_namespace, None
    elif name == "cupy":
        module, device = _load_cupy()
    elif name == "strict":
        module, device = _load_strict()
    else:
        raise ValueError(f"backend must be one of {', '.join(map(repr, NAMES))}; got {name!r}")
    _state.update(name=name, xp=module, device=device, environment_error=None)
    return module


@contextlib.contextmanager
def using(name):
    """Context manager: run the block on backend ``name``, then return to the previous one."""
    previous = _state["name"]
    use(name)
    try:
        yield _state["xp"]
    finally:
        use(previous)


def xp():
    """The active array namespace, to the array API standard: NumPy's or CuPy's (through
    array-api-compat) or array-api-strict's. Functions, not methods: ``xp.sum(x, axis=-1)``."""
    return _state["xp"]


def device():
    """The device new arrays are made on: pass it as ``device=`` to creation functions
    (``xp.zeros(shape, device=backend.device())``). None means the namespace's default."""
    return _state["device"]


def array_module():
    """The array library itself (``numpy``, ``cupy`` or ``array_api_strict``), for what only it has
    (CuPy's memory pool); array code uses ``xp()``."""
    if _state["name"] == "numpy":
        return numpy
    if _state["name"] == "cupy":
        import cupy

        return cupy
    import array_api_strict

    return array_api_strict


def available(name_):
    """True when backend ``name_`` can be used here (its library is installed, a device answers)."""
    loaders = {"numpy": lambda: None, "cupy": _load_cupy, "strict": _load_strict}
    load = loaders.get(name_)
    if load is None:
        raise ValueError(f"backend must be one of {', '.join(map(repr, NAMES))}; got {name_!r}")
    try:
        load()
    except RuntimeError:
        return False
    return True


def name():
    """The active backend's name: ``"numpy"``, ``"cupy"`` or ``"strict"``."""
    return _state["name"]


def on_host():
    """True when arrays live in host memory as NumPy arrays (the NumPy backend): the fast paths apply."""
    return _state["name"] == "numpy"


def dtype(name):
    """The active namespace's dtype called ``name`` (``"float32"``, ``"int64"``, ``"bool"``, ...)."""
    if not isinstance(name, str):
        name = numpy.dtype(name).name
    return getattr(_state["xp"], name)


_DTYPE_NAMES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32",
                "uint64", "bool", "complex64", "complex128")


def dtype_name(dtype_):
    """A dtype's plain name (``"float32"``), the same on every backend, for messages and files."""
    for candidate in _DTYPE_NAMES:
        if getattr(_state["xp"], candidate, None) == dtype_:
            return candidate
    return numpy.dtype(dtype_).name


def default_dtype():
    """The float dtype new tensors get (float32 unless changed with ``set_default_dtype``)."""
    return dtype(_state["dtype"])


def set_default_dtype(dtype_name):
    """Set the default float dtype: ``"float32"`` or ``"float64"`` (for gradient checks)."""
    key = numpy.dtype(dtype_name).name if not isinstance(dtype_name, str) else dtype_name
    if key not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype_name!r}")
    _state["dtype"] = key


@contextlib.contextmanager
def default_dtype_as(dtype_name):
    """Context manager: use ``dtype_name`` as the default float dtype inside the block."""
    previous = _state["dtype"]
    set_default_dtype(dtype_name)
    try:
        yield
    finally:
        _state["dtype"] = previous


def _is_kind(dtype_, kind, numpy_kinds):
    try:
        return bool(_state["xp"].isdtype(dtype_, kind))
    except (TypeError, ValueError, AttributeError):  # a NumPy dtype or a name, under another namespace
        return numpy.dtype(dtype_).kind in numpy_kinds


def is_float_dtype(dtype_):
    """True for real floating-point dtypes."""
    return _is_kind(dtype_, "real floating", "f")


def is_int_dtype(dtype_):
    """True for signed or unsigned integer dtypes."""
    return _is_kind(dtype_, "integral", "iu")


def is_bool_dtype(dtype_):
    """True for the boolean dtype."""
    return _is_kind(dtype_, "bool", "b")


def nbytes(x):
    """The bytes an array's elements take (the standard has no ``nbytes``): size × the dtype's bits / 8."""
    xp_ = _state["xp"]
    bits = 8 if is_bool_dtype(x.dtype) else (xp_.finfo if is_float_dtype(x.dtype) else xp_.iinfo)(x.dtype).bits
    return math.prod(x.shape) * bits // 8


_LIBRARY = {"numpy": "NumPy", "cupy": "CuPy", "strict": "array-api-strict"}


def _kind_of_array(x):
    """``"numpy"``, ``"cupy"``, ``"strict"`` for an array of that library, else None (Python data)."""
    if isinstance(x, numpy.ndarray):
        return "numpy"
    module = type(x).__module__
    if module.startswith("cupy"):
        return "cupy"
    if module.startswith("array_api_strict"):
        return "strict"
    return None


def asarray(x, dtype=None):
    """Convert ``x`` to an array of the active backend without crossing devices.

    Python scalars and lists are accepted (and placed on the device); an array of another backend
    is refused with a TypeError, since a silent copy between host and device hides a slow
    transfer: move host data with ``from_numpy`` and device data with ``to_numpy``.
    """
    module, active = _state["xp"], _state["name"]
    if isinstance(x, numpy.generic):  # a NumPy scalar, e.g. the result of a NumPy sum: keep its dtype
        x = numpy.asarray(x) if active == "numpy" else module.asarray(x.item(), dtype=dtype or x.dtype.name,
                                                                         device=_state["device"])
    kind = _kind_of_array(x)
    if kind is not None and kind != active:
        move = "minikd.engine.backend.from_numpy(x)" if kind == "numpy" else "minikd.engine.backend.to_numpy(x)"
        raise TypeError(f"got a {_LIBRARY[kind]} array while the active backend is {active!r}; "
                        f"move it with {move} or switch with minikd.engine.backend.use({kind!r})")
    if isinstance(dtype, str):
        dtype = getattr(module, dtype)
    if kind is None:  # Python data: floats take the default dtype
        arr = module.asarray(x, dtype=dtype, device=_state["device"])
        return module.astype(arr, default_dtype()) if dtype is None and is_float_dtype(arr.dtype) else arr
    return x if dtype is None or x.dtype == dtype else module.astype(x, dtype)


def to_numpy(x):
    """A NumPy copy (or view) of an array from any backend, for printing, plotting and saving.

    This is the one way from the device to the host; each call on a device array counts as a transfer.
    """
    kind = _kind_of_array(x)
    if kind == "numpy":
        return x
    if kind is None:
        return numpy.asarray(x)
    _host_reads["transfers"] += 1
    if kind == "cupy":
        return x.get()
    import array_api_strict

    return numpy.asarray(x.to_device(array_api_strict.Device()))  # CPU_DEVICE arrays convert to NumPy


def from_numpy(x):
    """An explicit copy of a NumPy array (or Python data) onto the active backend's device."""
    return _state["xp"].asarray(x, device=_state["device"])


def unravel_index(flat_index, shape):
    """The multi-index, as a tuple of Python ints, of element ``flat_index`` in an array of ``shape``."""
    return tuple(int(i) for i in numpy.unravel_index(int(flat_index), shape))


def host_xp():
    """The host array module (NumPy), for data generated on the CPU and for files; move with ``from_numpy``."""
    return numpy


@contextlib.contextmanager
def count_host_reads():
    """Context manager yielding a dict whose ``"transfers"`` (``to_numpy`` calls on device arrays) and
    ``"syncs"`` (scalar reads ``float(x)``/``int(x)``/``bool(x)`` of device arrays, counted under
    ``strict``) are the host reads made inside the block, filled in when it ends."""
    before = dict(_host_reads)
    counts = {"transfers": 0, "syncs": 0}
    try:
        yield counts
    finally:
        counts.update({key: _host_reads[key] - before[key] for key in counts})


def scatter_add(target, index, values):
    """``target[index[k]] += values[k]`` for every k along axis 0, repeated indices adding up.

    The array API standard has no scatter-add (and ``target[index] += values`` keeps only one of
    repeated indices), so each backend gets its own: ``numpy.add.at``, ``cupyx.scatter_add``, and
    under ``strict`` a one-hot matrix product, onehotᵀ @ values. ``index`` is a 1-D integer array
    (any NumPy index under numpy and cupy). Returns the updated ``target`` (in place except under strict).
    """
    name_ = _state["name"]
    if name_ == "numpy":
        numpy.add.at(target, index, values)
        return target
    if name_ == "cupy":
        import cupyx

        cupyx.scatter_add(target, index, values)
        return target
    module = _state["xp"]
    parts = index if isinstance(index, tuple) else (index,)
    if not all(hasattr(p, "ndim") and is_int_dtype(p.dtype) and p.shape == parts[0].shape for p in parts):
        raise TypeError(f"scatter_add under backend 'strict' needs integer index arrays of one shape, got {index!r}")
    n_rows, flat_index = 1, module.zeros(parts[0].shape, dtype=parts[0].dtype, device=_state["device"])
    for axis, part in enumerate(parts):  # index arrays for the first k axes → one row index of (n_rows, rest)
        flat_index = flat_index * target.shape[axis] + part
        n_rows *= target.shape[axis]
    flat_index = module.reshape(flat_index, (-1,))  # (k,)
    rows = module.arange(n_rows, device=_state["device"])  # (n,)
    onehot = module.astype(flat_index[:, None] == rows[None, :], values.dtype)  # (k, n)
    flat_values = module.reshape(values, (flat_index.shape[0], -1))  # (k, rest)
    return target + module.reshape(module.matmul(module.matrix_transpose(onehot), flat_values), target.shape)


def _seed_sequence(seed, keys):
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}: every random draw in minikd takes a seed")
    return numpy.random.SeedSequence([int(seed), *(int(k) for k in keys)]) if keys else int(seed)


def rng(seed, *keys):
    """A seeded random generator of the active backend (same seed and keys, same numbers on CPU).

    ``keys`` (non-negative ints, e.g. a step number) derive independent streams from one seed, so a
    draw at step t never depends on the draws before it: resuming at step t repeats it exactly.
    Under ``strict`` (the standard has no random numbers) NumPy draws and the backend uploads.
    """
    seq = _seed_sequence(seed, keys)
    if _state["name"] == "cupy":
        import cupy

        return cupy.random.default_rng(int(seq.generate_state(1)[0]) if keys else seq)
    generator = numpy.random.default_rng(seq)
    return generator if _state["name"] == "numpy" else _UploadingGenerator(generator)


class _UploadingGenerator:
    """A NumPy generator whose draws are copied to the active device (the ``strict`` backend's rng)."""

    def __init__(self, generator):
        self.generator = generator

    def __getattr__(self, method):
        draw = getattr(self.generator, method)
        return lambda *args, **kwargs: from_numpy(draw(*args, **kwargs))


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
    sleep, time a second busy process on the same cores needs. Process-wide: the ``minikd`` command,
    the tutorials' helper (``minikd.tools.tutorial``) and the test suite call it; ``import minikd`` never does.
    """
    threadpoolctl.threadpool_limits(limits=limit, user_api="blas")


def fast_paths_enabled():
    """True when the NumPy-only fast paths (fused, chunked, threaded, in-place) may run: the NumPy
    backend with ``fast_paths`` not switched off. Under cupy and strict the plain paths run."""
    return _state["fast"] and _state["name"] == "numpy"


@contextlib.contextmanager
def fast_paths(enabled):
    """Context manager: switch the NumPy fast paths on (the default) or off (plain paths only) in the block."""
    previous = _state["fast"]
    _state["fast"] = bool(enabled)
    try:
        yield
    finally:
        _state["fast"] = previous


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


def _forget_pool():
    """In a forked child: the parent's pool threads do not exist there, so its pool would wait forever."""
    _state["pool"] = None


if hasattr(os, "register_at_fork"):  # POSIX: multiprocessing's "fork" start method, mutmut's workers
    os.register_at_fork(after_in_child=_forget_pool)


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
    if _state["name"] in ("numpy", "strict"):  # array-api-strict computes with NumPy underneath
        return numpy.errstate(all="ignore")
    return contextlib.nullcontext()


def synchronize():
    """Wait for queued device work (a no-op on NumPy); call before reading a timer."""
    if _state["name"] == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


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
