"""Test configuration: float64 everywhere, shared fixtures and helpers."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import vardax_core  # noqa: E402,F401  (enables x64 as well)
from vardax_core.problems import get_problem, list_problems  # noqa: E402


@pytest.fixture(scope="session")
def problems():
    """Every registered problem with its defaults, built once per session."""
    return {name: get_problem(name) for name in list_problems()}


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    state = {"i": 0}

    def _getkey():
        state["i"] += 1
        return jax.random.key(state["i"])

    return _getkey


# Test files by measured wall time on 2 cores (seconds, CI run of 2026-11-22), longest
# first. With `pytest -n 2 --dist loadfile` each file goes to one worker in collection
# order, so starting the long files first keeps one long file from running alone at the
# end (longest-processing-time-first scheduling). Files not listed keep their order after.
_LONG_FILES = (
    "tests/flows/test_cycle.py",
    "tests/amortized/test_lorenz96.py",
    "tests/amortized/test_lg_flow_complete.py",
    "tests/amortized/test_lg_flow_gappy.py",
    "tests/amortized/test_lg_score.py",
    "tests/notebooks/test_notebooks_late.py",
    "tests/benchmarks/test_bench_quick.py",
    "tests/notebooks/test_notebooks.py",
    "tests/flows/test_emulator_flow.py",
    "tests/flows/test_servers.py",
    "tests/amortized/test_linear_gaussian.py",
    "tests/amortized/test_interface.py",
    "tests/emulator/test_trained.py",
    "tests/flows/test_dask.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(_LONG_FILES)}

    def key(item):
        path = os.path.relpath(str(item.path), str(config.rootpath))
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: the order within a file and among the others is kept
