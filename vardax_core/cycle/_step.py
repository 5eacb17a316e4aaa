"""The analysis step of a forecast–analysis cycle: what every method implements."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._twin import TwinSetup

#: The step's own state (mean and covariance, an ensemble, a window's buffer, …): a pytree.
State = Any


class AbstractAnalysisStep(eqx.Module):
    """One data-assimilation method inside the cycle. All methods are single-event,
    jittable and run inside the driver's ``lax.scan``:

    - ``init(setup, background, key)``: the state before the first forecast, from the
      initial background mean (*state);
    - ``forecast(setup, state, key)``: the state advanced by one cycle (M^s);
    - ``analyse(setup, state, y, mask, key)``: the state updated by one cycle's
      observations y, mask (*obs; NaN where mask is False);
    - ``moments(state)``: the estimate of the current state, mean and variance (*state);
    - ``pit(state, truth, key)``: the probability integral transform of the truth under
      the state's distribution, per component, in [0, 1] — uniform over cycles when the
      method is calibrated. Gaussian marginals by default; ensembles use the randomised
      rank of the truth among the members.
    """

    @abc.abstractmethod
    def init(self, setup: TwinSetup, background: Float[Array, "*state"], key: PRNGKeyArray) -> State: ...

    @abc.abstractmethod
    def forecast(self, setup: TwinSetup, state: State, key: PRNGKeyArray) -> State: ...

    @abc.abstractmethod
    def analyse(self, setup: TwinSetup, state: State, y, mask, key: PRNGKeyArray) -> State: ...

    @abc.abstractmethod
    def moments(self, state: State) -> tuple[Float[Array, "*state"], Float[Array, "*state"]]: ...

    def pit(self, state: State, truth: Float[Array, "*state"], key: PRNGKeyArray) -> Float[Array, "*state"]:
        mean, var = self.moments(state)
        return jax.scipy.stats.norm.cdf((truth - mean) / jnp.sqrt(jnp.maximum(var, 1e-300)))


def ensemble_pit(members: Float[Array, "N *state"], truth: Float[Array, "*state"], key: PRNGKeyArray):
    """(r + U) / (N + 1) with r the number of members below the truth and U uniform:
    uniform on [0, 1] when the truth is exchangeable with the members."""
    below = jnp.sum(members < truth, axis=0)
    return (below + jax.random.uniform(key, truth.shape, dtype=members.dtype)) / (members.shape[0] + 1)
