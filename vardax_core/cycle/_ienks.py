"""The iterative ensemble Kalman smoother (iEnKS), Gauss–Newton in the ensemble subspace."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._ensemble import check_ensemble_settings, initial_ensemble
from ._step import AbstractAnalysisStep, ensemble_pit


class IterativeEnsembleKalmanSmoother(AbstractAnalysisStep):
    """The iEnKS of Bocquet & Sakov (2014) in its square-root ("transform") form, single
    data assimilation, a data-assimilation window of ``lag`` cycles slid by one cycle.

    State: the ensemble E₀ (N, *state) at the window start t_{k−L} (the smoothed analysis
    of the previous cycle, carried one cycle), the number of cycles ``age`` from the
    window start to now (L once the window is full; fewer during the first cycles, when
    the window starts at time 0), and the ensemble ``now`` at the current time. Only the
    newest observation y_k enters the analysis — the older ones of the window are already
    in E₀. With x̄₀ the mean of E₀ and X₀ = E₀ − x̄₀ (N, n) its anomalies, the analysis
    minimises over w ∈ ℝᴺ

        J(w) = ½ (N−1) ‖w‖² + ½ ‖R^{−½} (y_k − H(M^{s·age}(x̄₀ + X₀ᵀ w)))‖²

    by Gauss–Newton. Iteration j propagates the ensemble E = x̄₀ + (w + T) X₀ (rows:
    members) to now and observes it; with Y its centred observed anomalies scaled by
    R^{−½} (zero rows where the mask is False), d = R^{−½}(y_k − mean of H(E)) and
    Y₀ = T⁻¹ Y (the sensitivities of the observations to w, averaged over the ensemble's
    spread rather than taken at one point), Y₀ Y₀ᵀ = V Λ Vᵀ:

        Δw = V (Λ + N−1)⁻¹ Vᵀ (Y₀ d − (N−1) w),      w ← w + Δw,
        T = √(N−1) V (Λ + N−1)^{−½} Vᵀ,             T⁻¹ = V (Λ + N−1)^{½} Vᵀ / √(N−1).

    It stops after ``n_iter`` iterations or once ‖Δw‖² < ``tol`` · N. The smoothed
    ensemble x̄₀ + (w + T) X₀ is the next cycle's window start (its anomalies multiplied
    by ``inflation``); the same ensemble propagated to now (before inflation) is the
    analysis. For a linear model and N > n the first iteration is exact and the sample
    moments of the analysis follow the Kalman filter (lag 1: the ETKF).

    The initial ensemble is ``initial_members`` when given, else the background plus
    N(0, ``initial_std``²) perturbations.
    """

    n_members: int = eqx.field(static=True)
    lag: int = eqx.field(static=True, default=1)
    n_iter: int = eqx.field(static=True, default=10)
    tol: float = eqx.field(static=True, default=1e-5)
    # arrays (traced, not static): a tuning sweep over their values compiles once
    inflation: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    initial_std: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    initial_members: Float[Array, "N *state"] | None = None

    def __check_init__(self):
        check_ensemble_settings(self)
        name = type(self).__name__
        if self.lag < 1:
            raise ValueError(f"{name}: `lag` must be >= 1 (cycles in the window), got {self.lag}")
        if self.n_iter < 1:
            raise ValueError(f"{name}: `n_iter` must be >= 1, got {self.n_iter}")
        if not self.tol >= 0:
            raise ValueError(f"{name}: `tol` must be >= 0, got {self.tol}")

    @staticmethod
    def _carry(setup, E, age):
        """Every member of E carried ``age`` cycles forward (``age`` may be traced)."""
        return jax.vmap(lambda x: jax.lax.fori_loop(0, age, lambda _, v: setup.propagate(v), x))(E)

    def init(self, setup, background, key):
        E = initial_ensemble(self, setup, background, key)
        return {"start": E, "age": jnp.asarray(0, jnp.int32), "now": E}

    def forecast(self, setup, state, key):
        moving = state["age"] >= self.lag
        start = jnp.where(moving, jax.vmap(setup.propagate)(state["start"]), state["start"])
        age = jnp.minimum(state["age"] + 1, self.lag)
        return {"start": start, "age": age, "now": self._carry(setup, start, age)}

    def analyse(self, setup, state, y, mask, key):
        N = self.n_members
        za = N - 1.0
        E0 = state["start"].reshape(N, -1)
        x0 = jnp.mean(E0, axis=0)
        X0 = E0 - x0
        m = mask.reshape(-1)
        sigma = jnp.broadcast_to(setup.noise.std, setup.obs_shape).reshape(-1)
        yv = jnp.where(m, y.reshape(-1), 0.0)
        eye = jnp.eye(N, dtype=E0.dtype)

        def body(carry):
            i, w, T, Tinv, now, _ = carry
            HE = jax.vmap(setup.obs_op)(now).reshape(N, -1)
            ym = jnp.mean(HE, axis=0)
            Y = jnp.where(m, (HE - ym) / sigma, 0.0)
            d = jnp.where(m, (yv - ym) / sigma, 0.0)
            Y0 = Tinv @ Y
            lam, V = jnp.linalg.eigh(Y0 @ Y0.T)
            lam = jnp.maximum(lam, 0.0) + za
            dw = V @ ((V.T @ (Y0 @ d - za * w)) / lam)
            w = w + dw
            T = (V * jnp.sqrt(za / lam)) @ V.T
            Tinv = (V * jnp.sqrt(lam / za)) @ V.T
            E = x0 + (w + T) @ X0
            now = self._carry(setup, E.reshape(state["start"].shape), state["age"])
            return i + 1, w, T, Tinv, now, dw @ dw

        def cond(carry):
            i, *_, dw2 = carry
            return (i < self.n_iter) & (dw2 >= self.tol * N)

        init = (jnp.asarray(0), jnp.zeros(N, E0.dtype), eye, eye, state["now"], jnp.asarray(jnp.inf, E0.dtype))
        _, w, T, _, now, _ = jax.lax.while_loop(cond, body, init)
        Ea = x0 + (w + T) @ X0
        xa = jnp.mean(Ea, axis=0)
        start = xa + self.inflation * (Ea - xa)
        return {"start": start.reshape(state["start"].shape), "age": state["age"], "now": now}

    def moments(self, state):
        return jnp.mean(state["now"], axis=0), jnp.var(state["now"], axis=0, ddof=1)

    def pit(self, state, truth, key):
        return ensemble_pit(state["now"], truth, key)
