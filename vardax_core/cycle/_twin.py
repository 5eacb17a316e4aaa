"""A twin experiment: a truth run of the model and noisy observations of it, cycle by cycle."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_shape
from ..problems import AbstractForwardModel, AbstractObservationOperator, GaussianNoise, GaussianPrior, Problem


class TwinSetup(eqx.Module):
    """Truth x_k = M^s(x_{k−1}) (s = ``steps_per_cycle`` model steps per cycle, no model
    error) observed once per cycle, y_k = H(x_k) + ε_k, ε_k ~ N(0, R), k = 1 … K
    (K = ``n_cycles``). Cycles ``1 … burn_in`` are spin-up: time averages skip them.

    With ``missing_fraction`` > 0 observations are dropped at random (mask False, value
    NaN), on top of the operator's ``base_mask``.
    """

    model: AbstractForwardModel
    obs_op: AbstractObservationOperator
    noise: GaussianNoise
    steps_per_cycle: int = eqx.field(static=True)
    n_cycles: int = eqx.field(static=True)
    burn_in: int = eqx.field(static=True, default=0)
    missing_fraction: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if self.model.state_shape != self.obs_op.state_shape:
            raise ValueError(
                f"TwinSetup: `model` state shape {self.model.state_shape} != `obs_op` state shape "
                f"{self.obs_op.state_shape}"
            )
        if self.steps_per_cycle < 1:
            raise ValueError(f"TwinSetup: `steps_per_cycle` must be >= 1, got {self.steps_per_cycle}")
        if self.n_cycles < 1:
            raise ValueError(f"TwinSetup: `n_cycles` must be >= 1, got {self.n_cycles}")
        if not 0 <= self.burn_in < self.n_cycles:
            raise ValueError(f"TwinSetup: `burn_in` must be in [0, n_cycles={self.n_cycles}), got {self.burn_in}")
        if not 0.0 <= self.missing_fraction < 1.0:
            raise ValueError(f"TwinSetup: `missing_fraction` must be in [0, 1), got {self.missing_fraction}")

    @property
    def state_shape(self) -> tuple[int, ...]:
        return self.model.state_shape

    @property
    def n_state(self) -> int:
        return math.prod(self.state_shape)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.obs_op.obs_shape

    @property
    def cycle_length(self) -> float:
        """Model time between two analyses."""
        return self.steps_per_cycle * self.model.dt

    def propagate(self, x: Float[Array, "*state"], cycles: int = 1) -> Float[Array, "*state"]:
        """M^{s·cycles}(x): ``cycles`` forecast cycles from one state."""
        return self.model.rollout(x, self.steps_per_cycle * cycles)[-1]

    def window_problem(self, prior: GaussianPrior, cycles: int = 0) -> Problem:
        """The strong-constraint problem of an analysis: the unknown is the state at the
        window start with prior ``prior`` (the background), observed at the end of each of
        the window's ``cycles`` cycles; ``cycles=0`` observes the start itself (a filter
        analysis). Works with traced priors (inside the cycle's scan)."""
        steps = self.steps_per_cycle
        obs_steps = (0,) if cycles == 0 else tuple(steps * (c + 1) for c in range(cycles))
        return Problem(self.model, self.obs_op, prior, self.noise, steps * cycles, obs_steps)

    @eqx.filter_jit
    def simulate(self, x0: Float[Array, "*state"], key: PRNGKeyArray):
        """The truth and its observations from the initial truth ``x0``: ``truth`` (K+1,
        *state) with ``truth[0] = x0``; ``y``, ``mask`` (K, *obs) for cycles 1 … K."""
        check_shape("x0", x0, self.state_shape, "one state")
        base = jnp.broadcast_to(jnp.asarray(self.obs_op.base_mask), self.obs_shape)

        def body(x, k):
            x = self.propagate(x)
            ke, km = jax.random.split(k)
            g = self.obs_op(x)
            mask = base
            if self.missing_fraction > 0:
                mask = mask & (jax.random.uniform(km, g.shape) >= self.missing_fraction)
            y = jnp.where(mask, g + self.noise.sample(ke, g.shape), jnp.nan)
            return x, (x, y, mask)

        _, (xs, y, mask) = jax.lax.scan(body, x0, jax.random.split(key, self.n_cycles))
        return jnp.concatenate([x0[None], xs]), y, mask
