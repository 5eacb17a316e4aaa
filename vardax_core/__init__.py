"""vardax_core: amortized posterior inference for variational data assimilation.

Importing the package changes two pieces of process-wide state, on purpose:

* ``jax_enable_x64`` is switched on. Oracle solves and gate statistics are float64, as
  the design requires, and JAX cannot hold a float64 array at all without this flag.
  Code that wants float32 (training, the heads' networks) casts explicitly.
* OpenBLAS (which jaxlib's CPU LAPACK kernels call) is limited to
  ``VARDAX_BLAS_THREADS`` threads, default 1, through ``threadpoolctl``. XLA already
  splits a batch of small factorisations over its own threads; OpenBLAS threads on top
  of that only contend (measured with ``jax`` 0.12.1 on 2 cores: full-covariance
  Gaussian head point estimate on 4,096 Lorenz-96 events, 19.7k-21.7k events/s with
  OpenBLAS's default 2 threads vs 22.1k-23.9k events/s with 1). Set
  ``VARDAX_BLAS_THREADS=0`` to leave OpenBLAS alone.
"""

import os as _os

import jax as _jax
from threadpoolctl import threadpool_limits as _threadpool_limits

_jax.config.update("jax_enable_x64", True)


def _blas_threads() -> int:
    raw = _os.environ.get("VARDAX_BLAS_THREADS", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(
            f"VARDAX_BLAS_THREADS must be a non-negative integer (0 = leave OpenBLAS "
            f"alone), got {raw!r}"
        ) from None
    if n < 0:
        raise ValueError(f"VARDAX_BLAS_THREADS must be >= 0, got {n}")
    return n


if _blas_threads() > 0:
    # jaxlib's CPU LAPACK kernels link SciPy's OpenBLAS, which is only loaded once
    # scipy.linalg is imported; load it first so the limit reaches it.
    import scipy.linalg as _scipy_linalg  # noqa: F401

    _threadpool_limits(limits=_blas_threads(), user_api="blas")

from ._version import __version__ as __version__
from .posterior import Posterior as Posterior

__all__ = ["Posterior", "__version__"]
