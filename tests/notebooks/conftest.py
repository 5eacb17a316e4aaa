"""A JAX compilation cache shared by the notebook runs of a test session.

The notebooks compile some identical programs (the lorenz96 oracle on 16 events in 02,
03 and 05; the linear-Gaussian oracle on 40 events in 02 and 04); with a persistent
cache a later notebook loads them instead of compiling again. A cache configured by
the caller (the Makefile sets ``JAX_COMPILATION_CACHE_DIR``) is used as it is;
otherwise one folder per session, shared by the pytest-xdist workers.
"""

import os

import pytest


@pytest.fixture(scope="session")
def jax_cache_env(tmp_path_factory):
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "notebooks-jax-cache"
    path.mkdir(parents=True, exist_ok=True)
    return {"JAX_COMPILATION_CACHE_DIR": str(path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
