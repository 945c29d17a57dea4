"""Test configuration: the Hypothesis profile (``ci`` unless HYPOTHESIS_PROFILE says otherwise), and the
small tasks and briefly trained models that several test files share."""

import os
import sys

import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import strategies`

import strategies  # noqa: E402,F401  (registers the profiles)
from reference import briefly_trained  # noqa: E402

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from minikd import backend  # noqa: E402

backend.limit_blas_threads()  # as the minikd command does: BLAS on one thread beside minikd's own pool


@pytest.fixture(autouse=True)
def _backend_unchanged():
    """Every test leaves the active backend (MINIKD_BACKEND's choice) as it found it."""
    from minikd import backend

    before = backend.name()
    yield
    assert backend.name() == before, f"the test switched the backend from {before!r} to {backend.name()!r}"


@pytest.fixture(scope="session")
def grammar_task():
    """A small grammar task: windows of 12 tokens, 20k training and 4k validation tokens."""
    from minikd.tasks import data
    return data.GrammarTask(block_size=12, train_tokens=20_000, val_tokens=4_000, seed=0)


@pytest.fixture(scope="session")
def addition_task():
    """Three-digit addition (the default width): 400 training and 40 validation problems."""
    from minikd.tasks import data
    return data.AdditionTask(digits=3, train_examples=400, val_examples=40, seed=0)


@pytest.fixture(scope="session")
def grammar_teacher(grammar_task):
    return briefly_trained(grammar_task)


@pytest.fixture(scope="session")
def addition_teacher(addition_task):
    return briefly_trained(addition_task, steps=40)


SLOWEST_FIRST = ("check_mode", "as_a_notebook", "fast_mode")  # the tutorials' runs, tens of seconds each


def pytest_collection_modifyitems(config, items):
    """The tutorials' runs first, the longest kind first, so that pytest-xdist's workers (``-n auto``)
    finish together rather than one waiting for the last long run.

    ``MINIKD_TESTS="tests/test_optim.py tests/test_train.py::test_x"`` keeps only those tests: the small
    selection a mutation run of one module needs (see README, Tests). Unset, every test runs."""
    def rank(item):
        return next((i for i, kind in enumerate(SLOWEST_FIRST) if kind in item.name), len(SLOWEST_FIRST))

    items.sort(key=rank)  # stable: the order within each kind stays
    wanted = os.environ.get("MINIKD_TESTS", "").split()
    if not wanted:
        return
    kept = [item for item in items if any(item.nodeid == w or item.nodeid.startswith((w + "::", w + "["))
                                          for w in wanted)]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
