"""Gaussian prior p(x₀) = N(x_b, B) over a window's initial state."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_shape
from ._covariance import AbstractCovariance


class GaussianPrior(eqx.Module):
    """N(mean, B) with B given as a covariance operator (never inverted densely).

    ``B``, ``B_inv`` and ``B_sqrt`` apply B, B⁻¹ and B^½ (with B^½ B^{½ᵀ} = B) to
    state-shaped arrays.
    """

    mean: Float[Array, "*state"]
    cov: AbstractCovariance

    def __check_init__(self):
        check_shape("mean", self.mean, self.cov.state_shape, "the covariance's state shape")

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    def B(self, v):
        return self.cov.mv(v)

    def B_inv(self, v):
        return self.cov.solve(v)

    def B_sqrt(self, z):
        return self.cov.sqrt_mv(z)

    def B_sqrt_T(self, v):
        return self.cov.sqrt_rmv(v)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> Float[Array, "*shape *state"]:
        z = jax.random.normal(key, (*shape, *self.state_shape), dtype=self.mean.dtype)
        flat = z.reshape(-1, *self.state_shape)
        return (self.mean + jax.vmap(self.cov.sqrt_mv)(flat)).reshape(z.shape)

    def log_prob(self, x: Float[Array, "*state"]) -> Float[Array, ""]:
        """log N(x; mean, B) for one state."""
        check_shape("x", x, self.state_shape, "one state")
        d = x - self.mean
        n = math.prod(self.state_shape)
        return -0.5 * (jnp.vdot(d, self.cov.solve(d)) + self.cov.logdet() + n * jnp.log(2 * jnp.pi))
