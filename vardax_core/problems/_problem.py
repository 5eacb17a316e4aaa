"""The Problem: forward model, observation operator, prior, noise and window layout."""

from __future__ import annotations

import hashlib
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._checks import check_observations, masked
from ._forward import AbstractForwardModel
from ._noise import GaussianNoise
from ._observation import AbstractObservationOperator
from ._prior import GaussianPrior


class Problem(eqx.Module):
    """A strong-constraint data-assimilation window.

    The unknown is the initial condition x₀ (``state_shape``). The model is stepped
    ``n_steps`` times; observations are taken after the steps listed in ``obs_steps``
    (0 = the initial time), T = ``len(obs_steps)`` of them:

        y_t = H(M_{s_t}(x₀)) + ε_t,   ε_t ~ N(0, R),   x₀ ~ N(x_b, B).

    Observations are batched as ``y, mask`` of shape ``(B, T, *obs_shape)``; ``mask`` is
    boolean, False where a value is missing (the operator's ``base_mask`` and, with
    ``missing_fraction`` > 0, random drop-outs). Missing values hold NaN in simulated
    data and are never used.
    """

    forward: AbstractForwardModel
    obs_op: AbstractObservationOperator
    prior: GaussianPrior
    noise: GaussianNoise
    n_steps: int = eqx.field(static=True)
    obs_steps: tuple[int, ...] = eqx.field(static=True)
    missing_fraction: float = eqx.field(static=True, default=0.0)
    name: str = eqx.field(static=True, default="custom")
    config_json: str = eqx.field(static=True, default="{}")

    def __check_init__(self):
        if self.forward.state_shape != self.obs_op.state_shape:
            raise ValueError(
                f"Problem: forward state shape {self.forward.state_shape} != observation operator "
                f"state shape {self.obs_op.state_shape}"
            )
        if self.prior.state_shape != self.forward.state_shape:
            raise ValueError(
                f"Problem: prior state shape {self.prior.state_shape} != forward state shape "
                f"{self.forward.state_shape}"
            )
        if not self.obs_steps or any(not 0 <= s <= self.n_steps for s in self.obs_steps):
            raise ValueError(f"Problem: `obs_steps` must be non-empty and within [0, {self.n_steps}]")
        if list(self.obs_steps) != sorted(set(self.obs_steps)):
            raise ValueError("Problem: `obs_steps` must be strictly increasing")
        if not 0.0 <= self.missing_fraction < 1.0:
            raise ValueError(f"Problem: `missing_fraction` must be in [0, 1), got {self.missing_fraction}")

    # ---- layout -------------------------------------------------------------------
    @property
    def state_shape(self) -> tuple[int, ...]:
        return self.forward.state_shape

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.obs_op.obs_shape

    @property
    def n_times(self) -> int:
        return len(self.obs_steps)

    @property
    def y_shape(self) -> tuple[int, ...]:
        """Shape of one event's observations, (T, *obs_shape)."""
        return (self.n_times, *self.obs_shape)

    @property
    def n_state(self) -> int:
        return math.prod(self.state_shape)

    @property
    def n_obs(self) -> int:
        """Observation slots per event (T · prod(obs_shape)), observed or not."""
        return math.prod(self.y_shape)

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def hash(self) -> str:
        """Content hash of the problem configuration (stable across processes)."""
        return hashlib.sha256(self.config_json.encode()).hexdigest()[:16]

    # ---- model ----------------------------------------------------------------------
    def trajectory(self, x0: Float[Array, "*state"]) -> Float[Array, "n_steps+1 *state"]:
        return self.forward.rollout(x0, self.n_steps)

    def window(self, x0: Float[Array, "*state"]) -> Float[Array, "T *obs"]:
        """The window operator G(x₀) = (H(M_{s_t}(x₀)))_t, noiseless, for one event."""
        states = self.trajectory(x0)[jnp.asarray(self.obs_steps)]
        return jax.vmap(self.obs_op)(states)

    def with_forward(self, forward: AbstractForwardModel) -> "Problem":
        """The same problem with the forward model swapped (e.g. for a neural emulator)."""
        if forward.state_shape != self.state_shape:
            raise ValueError(f"with_forward: `forward` state shape {forward.state_shape} != {self.state_shape}")
        return eqx.tree_at(lambda p: p.forward, self, forward)

    def base_mask(self) -> Bool[Array, "T *obs"]:
        return jnp.broadcast_to(jnp.asarray(self.obs_op.base_mask), self.y_shape)

    # ---- costs ------------------------------------------------------------------------
    def obs_misfit(self, x0, y, mask) -> Float[Array, ""]:
        """½ Σ_t ‖m_t ⊙ (y_t − H(M_t(x₀)))‖²_{R⁻¹} for one event."""
        r = masked(y, mask) - self.window(x0)
        return 0.5 * jnp.sum(jnp.where(mask, r * self.noise.R_inv(r), 0.0))

    def background_misfit(self, x0) -> Float[Array, ""]:
        """½ ‖x₀ − x_b‖²_{B⁻¹}."""
        d = x0 - self.prior.mean
        return 0.5 * jnp.vdot(d, self.prior.B_inv(d))

    def cost(self, x0, y, mask) -> Float[Array, ""]:
        """The strong-constraint 4DVar cost J(x₀) = background + observation misfit
        (the negative log posterior up to a constant)."""
        return self.background_misfit(x0) + self.obs_misfit(x0, y, mask)

    # ---- simulation ---------------------------------------------------------------------
    def check_observations(self, y, mask, batched: bool = True):
        """Validate ``(y, mask)`` for this problem (shapes, boolean mask, finite observed
        values); raises ``ValueError`` naming the variable."""
        return check_observations(y, mask, self.obs_shape, self.n_times, batched=batched)

    def simulate_one(self, key: PRNGKeyArray):
        """One event: (x₀, y, mask) with shapes (*state), (T, *obs), (T, *obs)."""
        kx, ke, km = jax.random.split(key, 3)
        x0 = self.prior.sample(kx)
        g = self.window(x0)
        eps = self.noise.sample(ke, g.shape)
        mask = self.base_mask()
        if self.missing_fraction > 0:
            mask = mask & (jax.random.uniform(km, g.shape) >= self.missing_fraction)
        y = jnp.where(mask, g + eps, jnp.nan)
        return x0, y, mask

    @eqx.filter_jit
    def _simulate(self, key, n: int, start):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(n))
        return jax.vmap(self.simulate_one)(keys)

    def simulate(self, key: PRNGKeyArray, n: int, start: int = 0):
        """``n`` events numbered ``start … start+n−1``: (x₀, y, mask), batched.

        Event i uses the key ``fold_in(key, i)``, so an event is the same (up to
        floating-point rounding of the batched arithmetic, ~1e-15) whichever batch or
        chunk it is simulated in, and bitwise the same for the same batch. Shapes: x₀ (n, *state); y and mask
        (n, T, *obs). Deterministic per key.
        """
        if int(n) < 1:
            raise ValueError(f"simulate: `n` must be >= 1, got {n}")
        if int(start) < 0:
            raise ValueError(f"simulate: `start` must be >= 0, got {start}")
        return self._simulate(key, int(n), jnp.asarray(start, dtype=jnp.int32))
