"""What importing ``vardax_core`` changes in the process (the package docstring names it)."""

import os
import subprocess
import sys

import pytest

_PROBE = (
    "import vardax_core, jax, jax.numpy as jnp\n"
    "jnp.linalg.cholesky(jnp.eye(3)).block_until_ready()\n"
    "from threadpoolctl import threadpool_info\n"
    "print(jax.config.jax_enable_x64, sorted({i['num_threads'] for i in threadpool_info()"
    " if i['internal_api'] == 'openblas'}))\n"
)


def _run(env_value):
    env = dict(os.environ)
    env.pop("VARDAX_BLAS_THREADS", None)
    env.pop("OPENBLAS_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    if env_value is not None:
        env["VARDAX_BLAS_THREADS"] = env_value
    return subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120
    )


def test_import_enables_x64_and_limits_every_openblas_to_one_thread():
    out = _run(None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[1]"]


def test_blas_threads_zero_leaves_openblas_alone():
    out = _run("0")
    assert out.returncode == 0, out.stderr
    x64, threads = out.stdout.split(maxsplit=1)
    assert x64 == "True"
    assert threads != "[1]" or (os.cpu_count() or 1) == 1


@pytest.mark.parametrize("bad", ["two", "-1"])
def test_bad_blas_threads_is_a_clear_error(bad):
    out = _run(bad)
    assert out.returncode != 0
    assert "VARDAX_BLAS_THREADS" in out.stderr
