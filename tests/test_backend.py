"""The array backend: one switch point, clear errors, seeded generators."""

import ast
import multiprocessing
import os
import pathlib

import numpy as np
import pytest

import minikd
from minikd import Tensor, backend

PACKAGE = pathlib.Path(minikd.__file__).parent


ARRAY_PACKAGES = ("numpy", "cupy", "cupyx", "array_api_strict", "array_api_compat", "array_api_extra")


def imported_array_packages(path):
    """(line, package) for every import of an array package in the file at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in ARRAY_PACKAGES]
    return found


def test_only_backend_imports_array_packages():
    """Nothing but engine/backend.py imports NumPy, CuPy or the array-API packages: not the package, not the tutorials."""
    paths = sorted(PACKAGE.rglob("*.py")) + sorted((PACKAGE.parent / "tutorials").glob("*.py"))
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}" for path in paths
                 if path != PACKAGE / "engine" / "backend.py" for line, name in imported_array_packages(path)]
    assert offenders == [], f"modules other than engine/backend.py import array packages: {offenders}"


def test_import_scan_sees_every_array_package(tmp_path):
    """The scan above would catch each package, at any depth of the import statement."""
    source = tmp_path / "leaky.py"
    source.write_text("".join(f"import {p}.sub as x{i}\nfrom {p} import y\n" for i, p in enumerate(ARRAY_PACKAGES)))
    assert sorted({name.split(".")[0] for _, name in imported_array_packages(source)}) == sorted(ARRAY_PACKAGES)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'numpy', 'cupy', 'strict'.*'jax'"):
        backend.use("jax")


def test_cupy_request_without_cupy_or_gpu_names_the_extra():
    try:
        import cupy  # noqa: F401

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("CuPy and a CUDA device are present")
    except Exception:
        pass
    previous = backend.name()
    with pytest.raises(RuntimeError, match=r"\.\[cuda12\]"):
        backend.use("cupy")
    assert backend.name() == previous  # a failed switch leaves the backend as it was


def test_environment_variable_selects_backend(monkeypatch):
    previous = backend.name()
    try:
        for name, namespace in (("numpy", "array_api_compat.numpy"), ("strict", "array_api_strict")):
            monkeypatch.setenv("MINIKD_BACKEND", name)
            backend._from_environment()
            assert backend.name() == name and backend.xp().__name__ == namespace
    finally:
        backend.use(previous)


def test_arrays_of_the_other_backend_are_refused(monkeypatch):
    class FakeCupyArray:
        pass

    FakeCupyArray.__module__ = "cupy._core.core"
    with backend.using("numpy"), pytest.raises(TypeError, match="CuPy array while the active backend is 'numpy'"):
        Tensor(FakeCupyArray())


def test_numpy_array_refused_under_a_device_backend():
    with backend.using("strict"):
        with pytest.raises(TypeError, match="NumPy array while the active backend is 'strict'.*from_numpy"):
            Tensor(np.zeros(3))


def test_default_dtype_and_python_data():
    float32, float64 = backend.dtype("float32"), backend.dtype("float64")
    assert backend.default_dtype() == float32
    assert Tensor([1.0, 2.0]).dtype == float32
    with backend.default_dtype_as("float64"):
        assert Tensor([1.0, 2.0]).dtype == float64
    assert Tensor([1.0]).dtype == float32
    assert backend.is_int_dtype(Tensor([1, 2]).dtype)
    with pytest.raises(ValueError, match="float32' or 'float64', got 'float16'"):
        backend.set_default_dtype("float16")


def test_seeded_generators_repeat_bit_for_bit():
    a = backend.to_numpy(backend.rng(7).standard_normal((3, 4)))
    b = backend.to_numpy(backend.rng(7).standard_normal((3, 4)))
    c = backend.to_numpy(backend.rng(8).standard_normal((3, 4)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="seed"):
        backend.rng(None)


def test_to_numpy_round_trip():
    x = backend.from_numpy(np.arange(6.0).reshape(2, 3))
    assert isinstance(backend.to_numpy(x), np.ndarray)
    assert np.array_equal(backend.to_numpy(x), np.arange(6.0).reshape(2, 3))


def test_map_blocks_keeps_order():
    assert backend.map_blocks(lambda i: i * i, range(10)) == [i * i for i in range(10)]


# ---- the strict backend refuses each rule's violation ------------------------------------------------
def _map_blocks_in_child():
    raise SystemExit(0 if backend.map_blocks(lambda i: i + 1, range(4)) == [1, 2, 3, 4] else 1)


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="fork is POSIX only")
def test_map_blocks_works_in_a_forked_child():
    """A child forked after the pool started has none of its threads: map_blocks must not wait on them."""
    backend.map_blocks(lambda i: i, range(4))  # the parent's pool now exists
    child = multiprocessing.get_context("fork").Process(target=_map_blocks_in_child)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


def test_strict_refuses_implicit_conversion_to_numpy():
    """A device array never becomes a NumPy array behind the code's back (np.asarray, np.exp of it)."""
    with backend.using("strict"):
        x = backend.from_numpy(np.arange(3.0))
        with pytest.raises(RuntimeError, match="device1"):
            np.asarray(x)
        assert np.array_equal(backend.to_numpy(x), np.arange(3.0))  # the explicit transfer works


def test_strict_refuses_arithmetic_mixing_host_and_device():
    with backend.using("strict"):
        x = backend.from_numpy(np.arange(3.0))
        with pytest.raises(TypeError, match="numpy.ndarray"):
            x + np.ones(3)
        with pytest.raises(ValueError, match="different devices"):
            x + backend.xp().ones(3)  # made without device=: on the CPU device, not device1
        with pytest.raises(TypeError, match="NumPy array while the active backend is 'strict'"):
            Tensor(x) + Tensor(np.ones(3))


def test_strict_refuses_numpy_only_functions_and_methods():
    with backend.using("strict") as xp:
        x = backend.from_numpy(np.arange(6.0).reshape(2, 3))
        for method in ("sum", "max", "reshape", "astype", "copy", "transpose"):
            with pytest.raises(AttributeError):
                getattr(x, method)
        for function in ("einsum", "swapaxes", "triu_indices", "ascontiguousarray"):
            assert not hasattr(xp, function)
        assert float(xp.sum(x)) == 15.0  # the standard's spelling works


def test_strict_scalar_reads_count_as_synchronisations():
    with backend.using("strict"):
        x = backend.from_numpy(np.arange(4.0))
        with backend.count_host_reads() as counts:
            float(x[1]), int(x[2]), bool(x[3] > 0)
            backend.to_numpy(x)
            Tensor(x).sum().item()
        assert counts == {"transfers": 1, "syncs": 4}


def test_scatter_add_sums_repeated_indices_on_every_backend():
    for name in ("numpy", "strict"):
        with backend.using(name) as xp:
            target = xp.zeros((3, 2), dtype=xp.float64, device=backend.device())
            index = backend.from_numpy(np.array([2, 0, 2, 2]))
            values = backend.from_numpy(np.arange(8.0).reshape(4, 2))
            result = backend.to_numpy(backend.scatter_add(target, index, values))
            assert np.array_equal(result, [[2.0, 3.0], [0.0, 0.0], [0.0 + 4 + 6, 1.0 + 5 + 7]])


def test_strict_generator_draws_the_numpy_numbers_on_the_device():
    host = np.random.default_rng(5).standard_normal(4)
    with backend.using("strict"):
        draw = backend.rng(5).standard_normal(4)
        assert draw.device == backend.device()
        assert np.array_equal(backend.to_numpy(draw), host)


def test_available_answers_without_switching():
    before = backend.name()
    assert backend.available("numpy") and backend.available("strict")  # array-api-strict is in the dev extra
    assert backend.name() == before
    with pytest.raises(ValueError, match="'numpy', 'cupy', 'strict'; got 'jax'"):
        backend.available("jax")


def test_fast_paths_run_only_on_numpy():
    with backend.using("numpy"):
        assert backend.fast_paths_enabled()
        with backend.fast_paths(False):
            assert not backend.fast_paths_enabled()
    with backend.using("strict"):
        assert not backend.fast_paths_enabled()
