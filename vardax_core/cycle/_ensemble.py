"""The ensemble Kalman filter (deterministic square-root form, ETKF)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_shape

from ._step import AbstractAnalysisStep, ensemble_pit


def check_ensemble_settings(step) -> None:
    """The settings every ensemble step shares: ``n_members`` >= 2, ``inflation`` >= 1,
    ``initial_std`` > 0 (errors name the step and the field)."""
    name = type(step).__name__
    if step.n_members < 2:
        raise ValueError(f"{name}: `n_members` must be >= 2, got {step.n_members}")
    if not bool(step.inflation >= 1.0):
        raise ValueError(f"{name}: `inflation` must be >= 1, got {step.inflation}")
    if not bool(step.initial_std > 0):
        raise ValueError(f"{name}: `initial_std` must be > 0, got {step.initial_std}")


def initial_ensemble(step, setup, background, key):
    """``step.initial_members`` (N, *state) when given, else the background plus
    N(0, ``step.initial_std``²) perturbations."""
    if step.initial_members is not None:
        check_shape("initial_members", step.initial_members, (step.n_members, *setup.state_shape), "n_members, *state")
        return jnp.asarray(step.initial_members, dtype=background.dtype)
    z = jax.random.normal(key, (step.n_members, *setup.state_shape), dtype=background.dtype)
    return background + step.initial_std * z


class EnsembleKalmanFilter(AbstractAnalysisStep):
    """The ensemble transform Kalman filter (Hunt et al. 2007) with multiplicative
    inflation. State: the ensemble E (N, *state). Forecast: each member by M^s.
    Analysis, with anomalies A = ρ (E − x̄) (ρ = ``inflation``), observed anomalies
    S = (H(E) − ȳ) / (σ √(N−1)) and innovations d = (y − ȳ) / σ (both zero where the mask
    is False), C = I_N + S Sᵀ:

        x_a = x̄ + Aᵀ C⁻¹ S d / √(N−1),     A_a = C^{−½} A   (symmetric square root),

    which keeps the ensemble mean and is the Kalman update for a linear H as N → ∞.
    The initial ensemble is ``initial_members`` (N, *state) when given, else the
    background plus N(0, ``initial_std``²) perturbations. For a linear model the sample
    mean and covariance then follow the Kalman filter started from the initial
    ensemble's sample moments exactly (N > n, no inflation).
    """

    n_members: int = eqx.field(static=True)
    # arrays (traced, not static): a tuning sweep over their values compiles once
    inflation: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    initial_std: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    initial_members: Float[Array, "N *state"] | None = None

    def __check_init__(self):
        check_ensemble_settings(self)

    def init(self, setup, background, key):
        return initial_ensemble(self, setup, background, key)

    def forecast(self, setup, state, key):
        return jax.vmap(setup.propagate)(state)

    def analyse(self, setup, state, y, mask, key):
        N = self.n_members
        E = state.reshape(N, -1)
        xm = jnp.mean(E, axis=0)
        A = self.inflation * (E - xm)
        HE = jax.vmap(setup.obs_op)(state).reshape(N, -1)
        ym = jnp.mean(HE, axis=0)
        m = mask.reshape(-1)
        sigma = jnp.broadcast_to(setup.noise.std, setup.obs_shape).reshape(-1)
        S = jnp.where(m, self.inflation * (HE - ym) / sigma, 0.0) / jnp.sqrt(N - 1.0)
        d = jnp.where(m, (jnp.where(m, y.reshape(-1), 0.0) - ym) / sigma, 0.0)
        lam, V = jnp.linalg.eigh(jnp.eye(N) + S @ S.T)
        w = V @ ((V.T @ (S @ d)) / lam)
        T = (V / jnp.sqrt(lam)) @ V.T
        Ea = xm + A.T @ w / jnp.sqrt(N - 1.0) + T @ A
        return Ea.reshape(state.shape)

    def moments(self, state):
        return jnp.mean(state, axis=0), jnp.var(state, axis=0, ddof=1)

    def pit(self, state, truth, key):
        return ensemble_pit(state, truth, key)
