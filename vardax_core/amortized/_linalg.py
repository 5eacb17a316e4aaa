"""Small dense linear algebra for the heads (one n × n factorisation per event)."""

from __future__ import annotations

import ctypes
import os

import jax.numpy as jnp
import jax.scipy.linalg as jsl

_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads")


def limit_openblas_threads() -> list[str]:
    """Set every OpenBLAS loaded in this process (and any loaded later, through
    ``OPENBLAS_NUM_THREADS``) to one thread. Returns the libraries it changed."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that jaxlib's LAPACK kernels use)

    changed = []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and line.rstrip().endswith(".so")}
    except OSError:  # not Linux: the environment variable is all we can do
        return changed
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            if hasattr(lib, name):
                getattr(lib, name)(ctypes.c_int(1))
                changed.append(path)
                break
    return changed


limit_openblas_threads()


def cholesky(A):
    """Lower Cholesky factor of a symmetric positive-definite matrix."""
    return jnp.linalg.cholesky(A)


def solve_lower(L, b, trans: bool = False):
    """x with L x = b (``trans``: Lᵀ x = b) for lower-triangular L."""
    return jsl.solve_triangular(L, b, lower=True, trans="T" if trans else "N")


def cho_solve(L, b):
    """x with (L Lᵀ) x = b."""
    return jsl.cho_solve((L, True), b)


def spd_inverse_cholesky(C):
    """Lower Cholesky factor of (C Cᵀ)⁻¹ for lower-triangular C (a precision factor →
    the covariance factor)."""
    cov = cho_solve(C, jnp.eye(C.shape[-1], dtype=C.dtype))
    return cholesky(0.5 * (cov + cov.T))
