"""Gaussian observation noise ε ~ N(0, R) with diagonal R = diag(std²)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._checks import check_positive


class GaussianNoise(eqx.Module):
    """Independent Gaussian errors; ``std`` is a scalar or broadcasts against one event's
    observations (T, *obs_shape): per position (``obs_shape``) or per observation time
    (T, 1, …), as the background-conditioned problems use (background row σ_b, observation
    row σ_o)."""

    std: Float[Array, "*obs"]

    def __init__(self, std):
        check_positive("std", std)
        self.std = jnp.asarray(std, dtype=float)

    def R_inv(self, r):
        """R⁻¹ r."""
        return r / self.std**2

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "*shape"]:
        return jax.random.normal(key, shape) * self.std

    def log_prob(self, r: Float[Array, "..."], mask: Bool[Array, "..."]) -> Float[Array, ""]:
        """Σ over observed entries of log N(r; 0, std²)."""
        std = jnp.broadcast_to(self.std, r.shape)
        terms = -0.5 * (r / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)
        return jnp.sum(jnp.where(mask, terms, 0.0))
