"""The cycle driver: forecast, then analyse, once per observation time, in one ``lax.scan``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_shape
from ._step import AbstractAnalysisStep
from ._twin import TwinSetup

#: Bins of the PIT histogram of :meth:`CycleResult.summary`.
PIT_BINS = 10


class CycleResult(eqx.Module):
    """Per-cycle output of :func:`run_cycle`, k = 1 … K (K = ``setup.n_cycles``):

    - ``truth``, ``analysis``, ``forecast`` (K, *state): the truth, the analysis mean and
      the forecast (background) mean at cycle k;
    - ``rmse_a``, ``rmse_f`` (K,): sqrt(mean_i (x̂_i − x_i)²) of analysis and forecast;
    - ``spread_a``, ``spread_f`` (K,): sqrt(mean_i var_i), the method's own error estimate;
    - ``pit`` (K, *state): the truth's probability integral transform under the analysis.
    """

    truth: Float[Array, "K *state"]
    analysis: Float[Array, "K *state"]
    forecast: Float[Array, "K *state"]
    rmse_a: Float[Array, "K"]
    rmse_f: Float[Array, "K"]
    spread_a: Float[Array, "K"]
    spread_f: Float[Array, "K"]
    pit: Float[Array, "K *state"]

    def summary(self, burn_in: int) -> dict:
        """Time averages over cycles after ``burn_in`` (as in the published tables: the
        mean over cycles of the instantaneous RMSE): ``rmse_a``, ``rmse_f``, ``spread_a``,
        ``spread_f``, ``spread_ratio`` = spread_a / rmse_a, ``coverage_90`` (fraction of
        components whose truth lies in the central 90 % of the analysis distribution),
        ``pit_histogram`` (``PIT_BINS`` frequencies, 1/PIT_BINS each when calibrated) and
        ``n_cycles`` averaged."""
        if not 0 <= burn_in < self.rmse_a.shape[0]:
            raise ValueError(f"summary: `burn_in` must be in [0, {self.rmse_a.shape[0]}), got {burn_in}")
        s = slice(burn_in, None)
        mean = lambda a: float(np.mean(np.asarray(a[s])))
        pit = np.asarray(self.pit[s]).reshape(-1)
        hist = np.histogram(pit, bins=PIT_BINS, range=(0.0, 1.0))[0] / pit.size
        out = {k: mean(getattr(self, k)) for k in ("rmse_a", "rmse_f", "spread_a", "spread_f")}
        out["spread_ratio"] = out["spread_a"] / out["rmse_a"]
        out["coverage_90"] = float(np.mean((pit >= 0.05) & (pit <= 0.95)))
        out["pit_histogram"] = [float(h) for h in hist]
        out["n_cycles"] = int(self.rmse_a.shape[0] - burn_in)
        return out


def _rms(a):
    return jnp.sqrt(jnp.mean(a**2))


@eqx.filter_jit
def _run(setup: TwinSetup, step: AbstractAnalysisStep, truth, y, mask, background, key) -> CycleResult:
    k_init, k_loop = jax.random.split(key)

    def body(state, inputs):
        x, yk, mk, k = inputs
        kf, ka, kp = jax.random.split(k, 3)
        state = step.forecast(setup, state, kf)
        mean_f, var_f = step.moments(state)
        state = step.analyse(setup, state, yk, mk, ka)
        mean_a, var_a = step.moments(state)
        out = (mean_a, mean_f, _rms(mean_a - x), _rms(mean_f - x), jnp.sqrt(jnp.mean(var_a)),
               jnp.sqrt(jnp.mean(var_f)), step.pit(state, x, kp))
        return state, out

    state = step.init(setup, background, k_init)
    keys = jax.random.split(k_loop, y.shape[0])
    _, out = jax.lax.scan(body, state, (truth[1:], y, mask, keys))
    return CycleResult(truth[1:], *out)


def run_cycle(
    setup: TwinSetup,
    step: AbstractAnalysisStep,
    truth: Float[Array, "K+1 *state"],
    y: Float[Array, "K *obs"],
    mask,
    background: Float[Array, "*state"],
    key: PRNGKeyArray,
) -> CycleResult:
    """Cycle ``step`` through the twin's K observation times: from ``init(background)``
    at time 0, each cycle k forecasts one cycle then analyses y_k. One jitted
    ``lax.scan`` over the cycles (no host round trip); the same compiled program serves
    any truth/observations of the same shapes. ``truth``, ``y``, ``mask`` as returned by
    :meth:`TwinSetup.simulate`."""
    K = setup.n_cycles
    check_shape("truth", truth, (K + 1, *setup.state_shape), "n_cycles + 1, *state")
    check_shape("y", y, (K, *setup.obs_shape), "n_cycles, *obs")
    check_shape("mask", mask, (K, *setup.obs_shape), "n_cycles, *obs")
    if jnp.asarray(mask).dtype != jnp.bool_:
        raise ValueError(f"`mask` must be boolean, got dtype {jnp.asarray(mask).dtype}")
    if not bool(jnp.all(jnp.isfinite(jnp.where(mask, y, 0.0)))):
        raise ValueError("`y` has non-finite values at observed positions (mask True)")
    check_shape("background", background, setup.state_shape, "one state")
    return _run(setup, step, jnp.asarray(truth), jnp.asarray(y), jnp.asarray(mask), jnp.asarray(background), key)
