"""The Kalman filter: the exact analysis step of a linear-Gaussian cycle."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..problems import DenseCovariance, GaussianPrior
from ..problems._closed_form import _posterior_one, require_linear
from ._step import AbstractAnalysisStep


def gaussian_prior(mean, cov) -> GaussianPrior:
    """N(mean, cov) as a :class:`GaussianPrior` (dense Cholesky; traceable)."""
    cov = 0.5 * (cov + cov.T)
    return GaussianPrior(mean, DenseCovariance(jnp.linalg.cholesky(cov), tuple(mean.shape)))


class KalmanFilter(AbstractAnalysisStep):
    """State (mean, P) over the flattened state. Forecast: mean ← M^s(mean),
    P ← M_s P M_sᵀ + Q (M_s the cycle's transition matrix, Q = ``model_error`` or 0).
    Analysis: the exact posterior of the filter problem — prior N(mean, P), y = H x + ε —
    by the same closed form every oracle and head is tested against
    (:func:`~vardax_core.problems.linear_gaussian_posterior`):
    P_a = (P⁻¹ + Hᵀ W H)⁻¹, x_a = x_b + P_a Hᵀ W (y − H x_b), W = diag(mask / σ²).

    ``initial_cov`` (n, n) is the covariance of the initial background."""

    initial_cov: Float[Array, "n n"]
    model_error: Float[Array, "n n"] | None = None

    def init(self, setup, background, key):
        require_linear(setup.model, setup.obs_op, "KalmanFilter")
        n = setup.n_state
        if self.initial_cov.shape != (n, n):
            raise ValueError(f"KalmanFilter: `initial_cov` must have shape {(n, n)}, got {self.initial_cov.shape}")
        return background, jnp.asarray(self.initial_cov, dtype=background.dtype)

    def forecast(self, setup, state, key):
        mean, cov = state
        M = jnp.linalg.matrix_power(setup.model.as_matrix(), setup.steps_per_cycle)
        cov = M @ cov @ M.T
        if self.model_error is not None:
            cov = cov + self.model_error
        return setup.propagate(mean), 0.5 * (cov + cov.T)

    def analyse(self, setup, state, y, mask, key):
        mean, cov = state
        problem = setup.window_problem(gaussian_prior(mean, cov))
        return _posterior_one(problem, setup.obs_op.as_matrix(), y[None], mask[None])

    def moments(self, state):
        mean, cov = state
        return mean, jnp.diagonal(cov).reshape(mean.shape)
