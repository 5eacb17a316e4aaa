"""The exact posterior of a linear-Gaussian problem — the ground truth for tests.

With a linear window operator G (stacking H M^{s_t} over observation times) and
the mask's weights W = diag(m / σ²), the posterior of x₀ given y is Gaussian:

    P = (B⁻¹ + Gᵀ W G)⁻¹,    x_a = x_b + P Gᵀ W (y − G x_b),

and the sensitivity of the analysis to the observations is the Kalman gain
∂x_a/∂y = K = P Gᵀ W (zero columns at unobserved positions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Bool, Float

from .._checks import masked
from ._forward import AbstractLinearForwardModel
from ._observation import AbstractLinearObservationOperator
from ._problem import Problem


def _require_linear(problem: Problem) -> None:
    if not isinstance(problem.forward, AbstractLinearForwardModel) or not isinstance(
        problem.obs_op, AbstractLinearObservationOperator
    ):
        raise ValueError(
            f"closed-form posterior needs a linear forward model and observation operator; "
            f"problem {problem.name!r} has {type(problem.forward).__name__} and {type(problem.obs_op).__name__}"
        )


def window_matrix(problem: Problem) -> Float[Array, "n_obs n_state"]:
    """G as a dense matrix: rows are the flattened (T, *obs_shape) observation slots."""
    _require_linear(problem)
    M = problem.forward.as_matrix()
    H = problem.obs_op.as_matrix()
    powers = [jnp.eye(M.shape[0])]
    for _ in range(problem.n_steps):
        powers.append(M @ powers[-1])
    return jnp.concatenate([H @ powers[s] for s in problem.obs_steps], axis=0)


def _weights(problem: Problem, mask) -> Float[Array, "n_obs"]:
    var = jnp.broadcast_to(problem.noise.std**2, problem.y_shape)
    return jnp.where(mask, 1.0 / var, 0.0).reshape(-1)


def _posterior_cov_chol(problem: Problem, G, w):
    B = problem.prior.cov.as_matrix()
    B_inv = jsl.cho_solve((jnp.linalg.cholesky(B), True), jnp.eye(B.shape[0]))
    precision = B_inv + G.T @ (w[:, None] * G)
    chol = jnp.linalg.cholesky(0.5 * (precision + precision.T))
    return jsl.cho_solve((chol, True), jnp.eye(B.shape[0]))


def _posterior_one(problem: Problem, G, y, mask):
    w = _weights(problem, mask)
    P = _posterior_cov_chol(problem, G, w)
    xb = problem.prior.mean.reshape(-1)
    innov = masked(y, mask).reshape(-1) - G @ xb
    return (xb + P @ (G.T @ (w * innov))).reshape(problem.state_shape), P


def linear_gaussian_posterior(
    problem: Problem, y: Float[Array, "T *obs"], mask: Bool[Array, "T *obs"]
) -> tuple[Float[Array, "*state"], Float[Array, "n n"]]:
    """Exact posterior mean (state-shaped) and covariance (n × n) for one event."""
    y, mask = problem.check_observations(y, mask, batched=False)
    return _posterior_one(problem, window_matrix(problem), y, mask)


def batched_linear_gaussian_posterior(
    problem: Problem, y: Float[Array, "B T *obs"], mask: Bool[Array, "B T *obs"]
) -> tuple[Float[Array, "B *state"], Float[Array, "B n n"]]:
    """Exact posteriors for a batch: means (B, *state), covariances (B, n, n)."""
    y, mask = problem.check_observations(y, mask, batched=True)
    G = window_matrix(problem)
    return jax.jit(jax.vmap(lambda yy, mm: _posterior_one(problem, G, yy, mm)))(y, mask)


def kalman_gain(problem: Problem, mask: Bool[Array, "T *obs"]) -> Float[Array, "n n_obs"]:
    """K = ∂x_a/∂y over the flattened state and observation slots, for one event's mask."""
    G = window_matrix(problem)
    w = _weights(problem, mask)
    P = _posterior_cov_chol(problem, G, w)
    return P @ (G.T * w[None, :])
