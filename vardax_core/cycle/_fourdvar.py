"""The 4DVar oracle as a cycling analysis step (static B, sliding window)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..oracle import AbstractFourDVar, StrongFourDVar
from ..oracle._laplace import _dense_one
from ..problems import GaussianPrior
from ._kalman import gaussian_prior
from ._step import AbstractAnalysisStep


class FourDVar(AbstractAnalysisStep):
    """Strong-constraint 4DVar over a window of the last ``lag`` cycles, slid by one cycle
    per analysis (``lag`` = 0: the observations at the analysis time only, i.e. 3D-Var
    solved by the oracle). The window's start x₀ has the static background covariance
    B (``background_cov``, n × n) around x_b = M^s(previous analysis of the window start);
    the analysis minimises

        J(x₀) = ½ ‖x₀ − x_b‖²_{B⁻¹} + ½ Σ_{c ∈ window} ‖m_c ⊙ (y_c − H(M^{s·c}(x₀)))‖²_{R⁻¹}

    with ``solver`` (the oracle's solver, one event, inside the cycle's scan) and reports
    M^{s·lag}(x₀*) as the estimate of the current state. Until ``lag`` cycles have passed
    the window starts at time 0 and holds fewer observations. The variance is the
    Gauss–Newton Laplace covariance P at x₀* carried to the current time by the tangent
    linear model: diag(J P Jᵀ), J = ∂M^{s·age}/∂x₀ (dense; small states).

    State: ``start`` (the window start, analysed or background), ``y``/``mask`` buffers of
    the window's ``max(lag, 1)`` cycles, ``age`` (cycles from the window start to now),
    and the current estimate ``mean``/``var``."""

    background_cov: Float[Array, "n n"]
    lag: int = eqx.field(static=True, default=1)
    solver: AbstractFourDVar = StrongFourDVar(gtol=1e-8, lanes=None)

    def __check_init__(self):
        if self.lag < 0:
            raise ValueError(f"FourDVar: `lag` must be >= 0, got {self.lag}")

    def _prior(self, x_b) -> GaussianPrior:
        return gaussian_prior(x_b, jnp.asarray(self.background_cov, dtype=x_b.dtype))

    def init(self, setup, background, key):
        n = setup.n_state
        if self.background_cov.shape != (n, n):
            raise ValueError(f"FourDVar: `background_cov` must have shape {(n, n)}, got {self.background_cov.shape}")
        slots = max(self.lag, 1)
        var = jnp.diagonal(jnp.asarray(self.background_cov, dtype=background.dtype)).reshape(background.shape)
        return {
            "start": background,
            "y": jnp.zeros((slots, *setup.obs_shape), background.dtype),
            "mask": jnp.zeros((slots, *setup.obs_shape), bool),
            "age": jnp.asarray(0, jnp.int32),
            "mean": background,
            "var": var,
        }

    def _now(self, setup, x0, age):
        """M^{s·age}(x₀): the window start carried to the current time."""
        if self.lag == 0:
            return x0
        traj = setup.model.rollout(x0, setup.steps_per_cycle * self.lag)
        return traj[setup.steps_per_cycle * age]

    def forecast(self, setup, state, key):
        if self.lag == 0:
            mean = setup.propagate(state["start"])
            return {**state, "start": mean, "mean": mean, "mask": jnp.zeros_like(state["mask"]), "age": state["age"]}
        moving = state["age"] >= self.lag
        start = jnp.where(moving, setup.propagate(state["start"]), state["start"])
        shift = lambda b, fill: jnp.where(moving, jnp.concatenate([b[1:], jnp.full_like(b[:1], fill)]), b)
        age = jnp.minimum(state["age"] + 1, self.lag)
        var = jnp.diagonal(jnp.asarray(self.background_cov, dtype=start.dtype)).reshape(start.shape)
        return {
            "start": start, "y": shift(state["y"], 0.0), "mask": shift(state["mask"], False), "age": age,
            "mean": self._now(setup, start, age), "var": var,
        }

    def analyse(self, setup, state, y, mask, key):
        slot = jnp.maximum(state["age"] - 1, 0)
        ybuf = state["y"].at[slot].set(jnp.where(mask, y, 0.0))
        mbuf = state["mask"].at[slot].set(mask)
        problem = setup.window_problem(self._prior(state["start"]), self.lag)
        result = self.solver._solve_one(problem, ybuf, mbuf, state["start"], self.solver._prepare(problem))
        x0 = result.x
        _, chol = _dense_one(problem, x0, ybuf, mbuf)
        J = jax.jacfwd(lambda x: self._now(setup, x, state["age"]).reshape(-1))(x0).reshape(setup.n_state, -1)
        F = J @ chol
        var = jnp.sum(F**2, axis=1).reshape(x0.shape)
        return {**state, "start": x0, "y": ybuf, "mask": mbuf, "mean": self._now(setup, x0, state["age"]), "var": var}

    def moments(self, state):
        return state["mean"], state["var"]
