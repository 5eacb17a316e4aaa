"""Analysis by a background-conditioned window problem: the oracle or an amortized head
solves the same problem inside the cycle."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..amortized import AmortizedPosterior, GaussianHead
from ..amortized._posterior import _gaussian, _point, _sample
from ..oracle import AbstractFourDVar, StrongFourDVar
from ..oracle._laplace import _dense_one
from ..problems import Problem
from ._step import AbstractAnalysisStep


class AbstractWindowAnalyser(eqx.Module):
    """The posterior of the window start x₀ of one event of a background-conditioned
    problem, as a Gaussian: ``(mean (*state), cov (n, n))``; jittable, single event."""

    @abc.abstractmethod
    def __call__(self, problem: Problem, y, mask, key) -> tuple[Float[Array, "*state"], Float[Array, "n n"]]: ...


class OracleAnalyser(AbstractWindowAnalyser):
    """The 4DVar MAP (``solver``, started at the background row) and the Gauss–Newton
    Laplace covariance there."""

    solver: AbstractFourDVar = StrongFourDVar(gtol=1e-8, lanes=None)

    def __call__(self, problem, y, mask, key):
        x_init = y[0].reshape(problem.state_shape)
        x = self.solver._solve_one(problem, y, mask, x_init, self.solver._prepare(problem)).x
        _, chol = _dense_one(problem, x, y, mask)
        return x, chol @ chol.T


class AmortizedAnalyser(AbstractWindowAnalyser):
    """An amortized posterior of the window problem: with ``n_draws`` = 0 a Gaussian head's
    own mean and covariance (F Fᵀ + diag d, or the full factor); with ``n_draws`` > 0 any
    head's point estimate and the covariance of ``n_draws`` of its draws (flow, score)."""

    posterior: AmortizedPosterior
    n_draws: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if self.n_draws == 0 and not isinstance(self.posterior.head, GaussianHead):
            raise ValueError(
                f"AmortizedAnalyser: a {type(self.posterior.head).__name__} has no closed-form covariance; "
                "give `n_draws` >= 2 to use the covariance of its draws"
            )
        if self.n_draws == 1 or self.n_draws < 0:
            raise ValueError(f"AmortizedAnalyser: `n_draws` must be 0 or >= 2, got {self.n_draws}")

    def __call__(self, problem, y, mask, key):
        model = self.posterior
        y, mask = y[None], mask[None]
        if self.n_draws == 0:
            mean, factor, diag = _gaussian.__wrapped__(model, y, mask)
            n = model.n_state
            cov = jnp.zeros((n, n), mean.dtype)
            if factor is not None:
                cov = cov + factor[0] @ factor[0].T
            if diag is not None:
                cov = cov + jnp.diag(diag[0].reshape(-1))
            return mean[0], cov
        draws = _sample.__wrapped__(model, y, mask, key, n=self.n_draws)[0].reshape(self.n_draws, -1)
        return _point.__wrapped__(model, y, mask)[0], jnp.atleast_2d(jnp.cov(draws.T))


class BackgroundConditionedStep(AbstractAnalysisStep):
    """The cycle's analysis as one event of ``problem``, a background-conditioned window
    problem (e.g. ``lorenz96_cycling``): observation row 0 is the background at the
    window start (all observed), row 1 the observations one cycle later. At cycle k the
    window runs from t_{k−1} to t_k; its background is the previous analysis of the
    state at t_{k−1}. ``analyser`` gives the posterior N(x₀*, P₀) of the window start;
    the analysis of the current state is M^s(x₀*) with variance diag(J P₀ Jᵀ), J the
    tangent linear of M^s at x₀*.

    State: ``start`` (the next window's background), ``mean`` and ``var`` (the estimate
    of the current state). The forecast carries ``var`` unchanged: the window problem's
    background error is its own fixed σ_b (``problem.noise.std[0]``), so no forecast
    covariance enters the analysis and none is propagated — this step's ``spread_f`` is
    the previous analysis spread, not a forecast spread."""

    problem: Problem
    analyser: AbstractWindowAnalyser

    def __check_init__(self):
        p = self.problem
        if p.n_times != 2 or p.obs_steps[0] != 0 or p.obs_shape != p.state_shape:
            raise ValueError(
                "BackgroundConditionedStep: `problem` must have two observation rows over the state "
                f"(background at step 0, observations after one cycle), got obs_steps {p.obs_steps} and "
                f"obs shape {p.obs_shape} for state {p.state_shape}"
            )

    def _check(self, setup):
        if setup.steps_per_cycle != self.problem.obs_steps[1] or setup.obs_shape != self.problem.obs_shape:
            raise ValueError(
                f"BackgroundConditionedStep: the problem's window ({self.problem.obs_steps[1]} steps, obs "
                f"{self.problem.obs_shape}) does not match the twin's cycle ({setup.steps_per_cycle} steps, obs "
                f"{setup.obs_shape})"
            )

    def init(self, setup, background, key):
        self._check(setup)
        var = jnp.broadcast_to(self.problem.noise.std[0] ** 2, background.shape).astype(background.dtype)
        return {"start": background, "mean": background, "var": var}

    def forecast(self, setup, state, key):
        start = state["mean"]
        return {"start": start, "mean": setup.propagate(start), "var": state["var"]}

    def analyse(self, setup, state, y, mask, key):
        ys = jnp.stack([state["start"], jnp.where(mask, y, jnp.nan)])
        ms = jnp.stack([jnp.ones_like(mask), mask])
        x0, P = self.analyser(self.problem, ys, ms, key)
        J = jax.jacfwd(lambda x: setup.propagate(x).reshape(-1))(x0).reshape(setup.n_state, -1)
        var = jnp.sum((J @ P) * J, axis=1).reshape(x0.shape)
        return {"start": state["start"], "mean": setup.propagate(x0), "var": var}

    def moments(self, state):
        return state["mean"], state["var"]
