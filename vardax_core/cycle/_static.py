"""Analysis steps with a static background covariance: optimal interpolation / 3D-Var,
and climatology."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..problems import AbstractLinearObservationOperator
from ..problems._closed_form import _posterior_one
from ._kalman import gaussian_prior
from ._step import AbstractAnalysisStep


class OptimalInterpolation(AbstractAnalysisStep):
    """x_a = x_b + B Hᵀ (H B Hᵀ + R)⁻¹ (y − H x_b) with a static B (n, n): optimal
    interpolation with a climatological B, 3D-Var with a scaled one (for a linear H the
    3D-Var minimiser is this closed form). State (mean, var): the forecast mean with
    var = diag B, the analysis with var = diag (B⁻¹ + Hᵀ W H)⁻¹ — the method's own
    (static) error estimate."""

    background_cov: Float[Array, "n n"]

    def _B(self, dtype):
        return jnp.asarray(self.background_cov, dtype=dtype)

    def init(self, setup, background, key):
        if not isinstance(setup.obs_op, AbstractLinearObservationOperator):
            raise ValueError(f"OptimalInterpolation needs a linear observation operator, got {type(setup.obs_op).__name__}")
        n = setup.n_state
        if self.background_cov.shape != (n, n):
            raise ValueError(f"OptimalInterpolation: `background_cov` must have shape {(n, n)}, got {self.background_cov.shape}")
        return background, jnp.diagonal(self._B(background.dtype)).reshape(background.shape)

    def forecast(self, setup, state, key):
        mean, _ = state
        return setup.propagate(mean), jnp.diagonal(self._B(mean.dtype)).reshape(mean.shape)

    def analyse(self, setup, state, y, mask, key):
        mean, _ = state
        problem = setup.window_problem(gaussian_prior(mean, self._B(mean.dtype)))
        xa, P = _posterior_one(problem, setup.obs_op.as_matrix(), y[None], mask[None])
        return xa, jnp.diagonal(P).reshape(mean.shape)

    def moments(self, state):
        return state


class Climatology(AbstractAnalysisStep):
    """The climatological mean and variance (*state) whatever the observations: the
    reference every method must beat."""

    mean: Float[Array, "*state"]
    var: Float[Array, "*state"]

    def init(self, setup, background, key):
        return self.mean, self.var

    def forecast(self, setup, state, key):
        return state

    def analyse(self, setup, state, y, mask, key):
        return state

    def moments(self, state):
        return state
