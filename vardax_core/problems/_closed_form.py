"""The exact posterior of a linear-Gaussian problem — the ground truth for tests.

With a linear window operator G (stacking H M^{s_t} over observation times) and
the mask's weights W = diag(m / σ²), the posterior of x₀ given y is Gaussian:

    P = (B⁻¹ + Gᵀ W G)⁻¹,    x_a = x_b + P Gᵀ W (y − G x_b),

and the sensitivity of the analysis to the observations is the Kalman gain
∂x_a/∂y = K = P Gᵀ W (zero columns at unobserved positions).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Bool, Float

from .._checks import check_observations, masked
from ..posterior import Posterior
from ._forward import AbstractLinearForwardModel
from ._observation import AbstractLinearObservationOperator
from ._problem import Problem


def require_linear(forward, obs_op, who: str) -> None:
    """Raise ``ValueError`` (naming ``who``) unless the model and operator are linear."""
    if not isinstance(forward, AbstractLinearForwardModel) or not isinstance(obs_op, AbstractLinearObservationOperator):
        raise ValueError(
            f"{who} needs a linear forward model and observation operator, got "
            f"{type(forward).__name__} and {type(obs_op).__name__}"
        )


def _require_linear(problem: Problem) -> None:
    require_linear(problem.forward, problem.obs_op, f"the closed-form posterior of problem {problem.name!r}")


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
    return jax.jit(lambda a, b: jax.vmap(lambda yy, mm: _posterior_one(problem, G, yy, mm))(a, b))(y, mask)


def kalman_gain(problem: Problem, mask: Bool[Array, "T *obs"]) -> Float[Array, "n n_obs"]:
    """K = ∂x_a/∂y over the flattened state and observation slots, for one event's mask."""
    G = window_matrix(problem)
    w = _weights(problem, mask)
    P = _posterior_cov_chol(problem, G, w)
    return P @ (G.T * w[None, :])


class ExactLinearGaussianPosterior(eqx.Module):
    """The exact posterior p(x₀ | y) of a linear-Gaussian problem, behind the same
    batched interface as an amortized posterior (``__call__``, ``sample``, ``log_prob``,
    ``posterior``). It is the reference every head and gate is tested against; the mean
    map y ↦ x_a is differentiable, with Jacobian the Kalman gain.
    """

    G: Float[Array, "n_obs n"]
    B_inv: Float[Array, "n n"]
    xb: Float[Array, "n"]
    var: Float[Array, "n_obs"]
    state_shape: tuple[int, ...] = eqx.field(static=True)
    y_shape: tuple[int, ...] = eqx.field(static=True)
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, problem: Problem):
        self.G = window_matrix(problem)
        B = problem.prior.cov.as_matrix()
        self.B_inv = jsl.cho_solve((jnp.linalg.cholesky(B), True), jnp.eye(B.shape[0]))
        self.xb = problem.prior.mean.reshape(-1)
        self.var = jnp.broadcast_to(problem.noise.std**2, problem.y_shape).reshape(-1)
        self.state_shape = problem.state_shape
        self.y_shape = problem.y_shape
        self.obs_shape = problem.obs_shape

    @property
    def has_density(self) -> bool:
        return True

    def _one(self, y, mask):
        w = jnp.where(mask.reshape(-1), 1.0 / self.var, 0.0)
        prec = self.B_inv + self.G.T @ (w[:, None] * self.G)
        chol = jnp.linalg.cholesky(0.5 * (prec + prec.T))  # precision = L Lᵀ
        innov = masked(y, mask).reshape(-1) - self.G @ self.xb
        mean = self.xb + jsl.cho_solve((chol, True), self.G.T @ (w * innov))
        return mean, chol

    def _check(self, y, mask):
        return check_observations(y, mask, self.obs_shape, self.y_shape[0])

    def __call__(self, y, mask):
        """Posterior means, (B, *state)."""
        y, mask = self._check(y, mask)
        return jax.vmap(lambda a, b: self._one(a, b)[0])(y, mask).reshape(-1, *self.state_shape)

    def sample(self, y, mask, key, n: int):
        """(B, n, *state) exact draws: x = mean + L⁻ᵀ z with precision L Lᵀ."""
        y, mask = self._check(y, mask)
        keys = jax.random.split(key, y.shape[0])

        def one(yy, mm, k):
            mean, chol = self._one(yy, mm)
            z = jax.random.normal(k, (n, mean.shape[0]), dtype=mean.dtype)
            return mean + jsl.solve_triangular(chol, z.T, lower=True, trans="T").T

        return jax.vmap(one)(y, mask, keys).reshape(y.shape[0], n, *self.state_shape)

    def log_prob(self, x, y, mask):
        """(B,) exact log densities of states x (B, *state)."""
        y, mask = self._check(y, mask)

        def one(xx, yy, mm):
            mean, chol = self._one(yy, mm)
            d = chol.T @ (xx.reshape(-1) - mean)
            return -0.5 * (d @ d) + jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * d.size * jnp.log(2 * jnp.pi)

        return jax.vmap(one)(x, y, mask)

    def posterior(self, y, mask, key=None, n_samples: int = 0):
        """The :class:`~vardax_core.Posterior` with dense covariance (and draws if asked)."""
        y, mask = self._check(y, mask)

        def one(yy, mm):
            mean, chol = self._one(yy, mm)
            cov = jsl.cho_solve((chol, True), jnp.eye(mean.shape[0]))
            return mean, jnp.linalg.cholesky(cov)

        mean, cov_chol = jax.vmap(one)(y, mask)
        samples = None
        if n_samples:
            samples = self.sample(y, mask, key, n_samples)
        return Posterior.create(
            mean.reshape(-1, *self.state_shape), cov_factor=cov_chol, samples=samples,
            provenance={"method": "exact_linear_gaussian"},
        )
