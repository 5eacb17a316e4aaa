"""Small dense linear algebra for the heads (one n × n factorisation per event)."""

from __future__ import annotations

import ctypes
import os

import jax
import jax.numpy as jnp

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


# The factorisations below are written with ``lax.fori_loop`` over rows/columns and plain
# XLA arithmetic instead of LAPACK custom calls. Reason (measured): jaxlib 0.10.2 on CPU
# runs a *batched* (vmapped) LAPACK kernel through a parallel batch map on XLA's
# intra-op thread pool, and two such kernels in flight at once can wait on each other
# forever on a 2-core machine, so per-event factorisations had to be mapped one event at
# a time (``lax.map``) — which made every head with a full covariance 20–30x slower than
# a diagonal one, in training as well. These loops vmap like any elementwise code: a
# batch of events advances column by column together. Each function is the textbook
# unblocked algorithm (n sequential steps of O(n²) work); the heads' matrices are small
# (n ≤ a few hundred), and reverse-mode differentiation goes through the loop.


def cholesky(A):
    """Lower Cholesky factor L (L Lᵀ = A) of a symmetric positive-definite (n, n) matrix,
    column by column: L_jj = √(A_jj − Σ_{k<j} L_jk²), L_ij = (A_ij − Σ_{k<j} L_ik L_jk) / L_jj.
    Only the lower triangle of A is read. A non-positive pivot gives NaN (as LAPACK's
    ``potrf`` reports failure), never a silently wrong factor."""
    A = jnp.asarray(A)
    n = A.shape[-1]
    idx = jnp.arange(n)

    def column(j, L):
        lj = L[j]  # row j: its entries at columns ≥ j are still zero
        d = jnp.sqrt(A[j, j] - lj @ lj)
        col = (A[:, j] - L @ lj) / d
        return L.at[:, j].set(jnp.where(idx > j, col, jnp.where(idx == j, d, 0)))

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(A))


def solve_lower(L, b, trans: bool = False):
    """x with L x = b (forward substitution) or, with ``trans``, Lᵀ x = b (backward
    substitution), for lower-triangular (n, n) L and b of shape (n,) or (n, k)."""
    L, b = jnp.asarray(L), jnp.asarray(b)
    n = L.shape[-1]

    def forward(i, x):
        return x.at[i].set((b[i] - L[i] @ x) / L[i, i])

    def backward(t, x):
        i = n - 1 - t
        return x.at[i].set((b[i] - L[:, i] @ x) / L[i, i])

    return jax.lax.fori_loop(0, n, backward if trans else forward, jnp.zeros_like(b))


def cho_solve(L, b):
    """x with (L Lᵀ) x = b."""
    return solve_lower(L, solve_lower(L, b), trans=True)


def spd_inverse_cholesky(C):
    """Lower Cholesky factor of (C Cᵀ)⁻¹ for lower-triangular C (a precision factor →
    the covariance factor)."""
    cov = cho_solve(C, jnp.eye(C.shape[-1], dtype=C.dtype))
    return cholesky(0.5 * (cov + cov.T))
