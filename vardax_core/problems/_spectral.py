"""Fourier multipliers on periodic grids, applied with dense DFT matrices.

``periodic_apply(x, symbol)`` computes F⁻¹ (symbol ⊙ F x) over every axis of ``x``.
The DFT is done by matrix products (one small n × n complex matrix per axis) rather
than ``jnp.fft``: XLA's CPU FFT kernel rejects the column-major layouts that layout
assignment propagates from LAPACK consumers (Cholesky, eigh, …) in the same jitted
program (``RET_CHECK … fft_thunk.cc … IsMonotonicWithDim0Major``), which would break
every batched solver that mixes the two. For the grids used here (≤ 64 points per
axis) the matmul costs about as much as an FFT.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp


def _dft_matrix(n: int, inverse: bool) -> np.ndarray:
    k = np.arange(n)
    sign = 1.0 if inverse else -1.0
    m = np.exp(sign * 2j * np.pi * np.outer(k, k) / n)
    return m / n if inverse else m


def _transform(x, inverse: bool):
    for axis in range(x.ndim):
        m = jnp.asarray(_dft_matrix(x.shape[axis], inverse))
        x = jnp.moveaxis(jnp.tensordot(m, x, axes=([1], [axis])), 0, axis)
    return x


def periodic_apply(x, symbol):
    """Re[F⁻¹ (symbol ⊙ F x)] for a real ``x`` and a symbol of the same shape.

    The result is real whenever ``symbol`` is Hermitian (symbol(−k) = conj(symbol(k))),
    as for every real circulant operator.
    """
    xh = _transform(x.astype(jnp.result_type(x.dtype, jnp.complex64)), inverse=False)
    return _transform(symbol * xh, inverse=True).real
