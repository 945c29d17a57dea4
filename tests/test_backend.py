"""The array backend: one switch point, clear errors, seeded generators."""

import ast
import pathlib

import numpy as np
import pytest

import minikd
from minikd import Tensor, backend

PACKAGE = pathlib.Path(minikd.__file__).parent


def test_only_backend_imports_numpy_or_cupy():
    """Nothing but backend.py imports NumPy or CuPy: not the package, not the tutorials."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")) + sorted((PACKAGE.parent / "tutorials").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] in ("numpy", "cupy", "cupyx") for n in names) and path.name != "backend.py":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == [], f"modules other than backend.py import numpy/cupy: {offenders}"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'numpy', 'cupy'.*'jax'"):
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
    monkeypatch.setenv("MINIKD_BACKEND", "numpy")
    backend._from_environment()
    assert backend.name() == "numpy" and backend.xp() is np


@pytest.mark.skipif(backend.name() != "numpy", reason="needs the NumPy backend")
def test_arrays_of_the_other_backend_are_refused(monkeypatch):
    class FakeCupyArray:
        pass

    FakeCupyArray.__module__ = "cupy._core.core"
    with pytest.raises(TypeError, match="CuPy array while the active backend is 'numpy'"):
        Tensor(FakeCupyArray())


def test_numpy_array_refused_under_cupy(monkeypatch):
    class FakeCupy:
        pass

    monkeypatch.setitem(backend._state, "xp", FakeCupy)
    with pytest.raises(TypeError, match="NumPy array while the active backend is 'cupy'"):
        backend.asarray(np.zeros(3))


def test_default_dtype_and_python_data():
    assert backend.default_dtype() == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    with backend.default_dtype_as("float64"):
        assert Tensor([1.0, 2.0]).dtype == np.float64
    assert Tensor([1.0]).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i"
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
