"""Test helpers (importable as ``tests.helpers``)."""

import os

import jax
import jax.numpy as jnp
import numpy as np


def xla_o0_flags() -> str:
    """``XLA_FLAGS`` of this process plus backend optimisation level 0, for subprocesses
    whose run time is mostly compilation at small sizes (notebooks, the quick benchmark
    chain): level 0 compiles several times faster there."""
    return (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def tree_allclose(x, y, *, rtol=1e-12, atol=1e-12) -> bool:
    """True when two pytrees have the same structure and allclose leaves."""
    xs, tx = jax.tree_util.tree_flatten(x)
    ys, ty = jax.tree_util.tree_flatten(y)
    if tx != ty:
        return False
    return all(
        np.shape(a) == np.shape(b) and np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
        for a, b in zip(xs, ys)
    )


def rel_err(a, b) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius over all entries)."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    return float(jnp.linalg.norm((a - b).ravel()) / jnp.linalg.norm(b.ravel()))


def numpy_rk4(f, x, dt, steps=1):
    for _ in range(steps):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x
