"""Covariance operators acting on state-shaped arrays.

Every operator represents a symmetric positive-definite matrix C over the flattened
state (size n) and applies C, C⁻¹, a square root S with S Sᵀ = C, and Sᵀ, without
ever forming a dense inverse. Only :class:`DenseCovariance` stores an n × n array;
:class:`CirculantCovariance` works in Fourier space and scales to 2D grids.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from ._spectral import periodic_apply


class AbstractCovariance(eqx.Module):
    """A covariance C over states of shape ``state_shape`` (n = prod(state_shape))."""

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]: ...

    @abc.abstractmethod
    def mv(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """C v."""

    @abc.abstractmethod
    def solve(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """C⁻¹ v."""

    @abc.abstractmethod
    def sqrt_mv(self, z: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """S z, with S Sᵀ = C (used for sampling and the control-variable transform)."""

    @abc.abstractmethod
    def sqrt_rmv(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """Sᵀ v."""

    @abc.abstractmethod
    def variance(self) -> Float[Array, "*state"]:
        """diag(C), reshaped to the state."""

    @abc.abstractmethod
    def logdet(self) -> Float[Array, ""]:
        """log det C."""

    @property
    def size(self) -> int:
        return math.prod(self.state_shape)

    def as_matrix(self) -> Float[Array, "n n"]:
        """Dense C over the flattened state (for tests and small states only)."""
        eye = jnp.eye(self.size).reshape((self.size, *self.state_shape))
        cols = eqx.filter_vmap(self.mv)(eye)
        return cols.reshape(self.size, self.size).T


class DiagonalCovariance(AbstractCovariance):
    """C = diag(std²)."""

    std: Float[Array, "*state"]

    def __check_init__(self):
        if not np.all(np.asarray(self.std) > 0):
            raise ValueError("DiagonalCovariance: `std` must be strictly positive")

    @property
    def state_shape(self):
        return tuple(self.std.shape)

    def mv(self, v):
        return self.std**2 * v

    def solve(self, v):
        return v / self.std**2

    def sqrt_mv(self, z):
        return self.std * z

    def sqrt_rmv(self, v):
        return self.std * v

    def variance(self):
        return self.std**2

    def logdet(self):
        return 2.0 * jnp.sum(jnp.log(self.std))


class CirculantCovariance(AbstractCovariance):
    """A stationary covariance on a periodic grid (1D ring or 2D torus).

    C = F⁻¹ diag(λ) F with F the (unitary) n-dimensional DFT and λ > 0 the spectrum,
    stored with the state's shape. C, C⁻¹ and the symmetric square root C^½ cost
    one DFT pair each.
    """

    spectrum: Float[Array, "*state"]

    def __check_init__(self):
        if not np.all(np.asarray(self.spectrum) > 0):
            raise ValueError("CirculantCovariance: `spectrum` must be strictly positive")

    @classmethod
    def from_length_scale(
        cls, state_shape: tuple[int, ...], std: float, length_scale: float, floor: float = 1e-2
    ) -> "CirculantCovariance":
        """Gaussian-shaped correlation with the given length scale (in grid points).

        The spectrum is λ_k ∝ exp(−½ (2π |k| ℓ / n)²) + floor, scaled so that every
        marginal variance equals ``std**2``; the floor bounds the condition number of
        C by about 1/floor, keeping C⁻¹ and 4DVar well conditioned.
        """
        if std <= 0 or length_scale < 0:
            raise ValueError(
                f"CirculantCovariance: need std > 0 and length_scale >= 0, got {std}, {length_scale}"
            )
        grids = np.meshgrid(*[np.fft.fftfreq(n) for n in state_shape], indexing="ij")
        k2 = sum(g**2 for g in grids)
        s = np.exp(-0.5 * (2 * np.pi * length_scale) ** 2 * k2) + floor
        s = std**2 * s / s.mean()  # diag(C) = mean(λ)
        return cls(jnp.asarray(s))

    @property
    def state_shape(self):
        return tuple(self.spectrum.shape)

    def _apply(self, v, weights):
        return periodic_apply(v, weights)

    def mv(self, v):
        return self._apply(v, self.spectrum)

    def solve(self, v):
        return self._apply(v, 1.0 / self.spectrum)

    def sqrt_mv(self, z):
        return self._apply(z, jnp.sqrt(self.spectrum))

    sqrt_rmv = sqrt_mv  # the square root is symmetric

    def variance(self):
        return jnp.full(self.state_shape, jnp.mean(self.spectrum))

    def logdet(self):
        return jnp.sum(jnp.log(self.spectrum))


class DenseCovariance(AbstractCovariance):
    """C = L Lᵀ from a lower-triangular Cholesky factor over the flattened state."""

    chol: Float[Array, "n n"]
    shape: tuple[int, ...] = eqx.field(static=True)

    def __check_init__(self):
        n = math.prod(self.shape)
        if self.chol.shape != (n, n):
            raise ValueError(f"DenseCovariance: `chol` must have shape {(n, n)}, got {self.chol.shape}")

    @classmethod
    def from_matrix(cls, matrix, state_shape: tuple[int, ...] | None = None) -> "DenseCovariance":
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"DenseCovariance: `matrix` must be square, got shape {matrix.shape}")
        if not np.allclose(matrix, matrix.T):
            raise ValueError("DenseCovariance: `matrix` must be symmetric")
        try:
            chol = np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError as e:
            raise ValueError("DenseCovariance: `matrix` must be positive definite") from e
        return cls(jnp.asarray(chol), tuple(state_shape or (matrix.shape[0],)))

    @property
    def state_shape(self):
        return self.shape

    def _flat(self, f, v):
        return f(v.reshape(-1)).reshape(self.shape)

    def mv(self, v):
        return self._flat(lambda u: self.chol @ (self.chol.T @ u), v)

    def solve(self, v):
        return self._flat(lambda u: jsl.cho_solve((self.chol, True), u), v)

    def sqrt_mv(self, z):
        return self._flat(lambda u: self.chol @ u, z)

    def sqrt_rmv(self, v):
        return self._flat(lambda u: self.chol.T @ u, v)

    def variance(self):
        return jnp.sum(self.chol**2, axis=1).reshape(self.shape)

    def logdet(self):
        return 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(self.chol))))
