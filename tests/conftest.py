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
