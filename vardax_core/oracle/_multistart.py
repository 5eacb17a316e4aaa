"""Multi-start 4DVar for non-convex windows: the lowest-cost of several solves."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..problems import Problem
from ._base import AbstractFourDVar, check_x
from ._result import FourDVarResult


class MultiStart(eqx.Module):
    """Run ``solver`` from ``n_starts`` start points per event and keep, per event, the
    solution with the lowest final cost (non-finite costs read ``inf`` and lose).

    Start 0 is ``x_init`` (default the background x_b); starts 1 … n_starts−1 are
    x_b + ``spread`` · B^½ z_j with z_j ~ N(0, I) drawn from ``seed`` — the same draws for
    every event, so an event's answer does not depend on the batch it is solved in.
    All B · n_starts solves run as one batched, jitted call of ``solver``. The kept
    solution carries its own ``converged``/``reason``; ``solve_all`` returns every start.
    """

    solver: AbstractFourDVar
    n_starts: int = eqx.field(static=True, default=8)
    spread: float = eqx.field(static=True, default=1.0)
    seed: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if self.n_starts < 1:
            raise ValueError(f"MultiStart: n_starts must be >= 1, got {self.n_starts}")
        if not self.spread > 0:
            raise ValueError(f"MultiStart: spread must be > 0, got {self.spread}")

    def config(self) -> dict:
        return {"multistart": {"n_starts": self.n_starts, "spread": self.spread, "seed": self.seed}, **self.solver.config()}

    def starts(self, problem: Problem, x_init) -> jax.Array:
        """(B, n_starts, *state) start points for B events with first starts ``x_init``."""
        z = jax.random.normal(
            jax.random.key(self.seed), (self.n_starts - 1, *problem.state_shape), dtype=problem.prior.mean.dtype
        )
        draws = problem.prior.mean + self.spread * jax.vmap(problem.prior.B_sqrt)(z)
        batch = x_init.shape[0]
        return jnp.concatenate([x_init[:, None], jnp.broadcast_to(draws, (batch, *draws.shape))], axis=1)

    def solve_all(self, problem: Problem, y, mask, x_init=None) -> FourDVarResult:
        """Every start's result, fields shaped (B, n_starts, …)."""
        y, mask = problem.check_observations(y, mask, batched=True)
        batch, n = y.shape[0], self.n_starts
        x_init = check_x(problem, problem.prior.mean if x_init is None else x_init, batch)
        x0 = self.starts(problem, x_init).reshape(batch * n, *problem.state_shape)
        rep = lambda a: jnp.repeat(a, n, axis=0)  # noqa: E731
        res = self.solver.solve(problem, rep(y), rep(mask), x0)
        return jax.tree.map(lambda a: a.reshape(batch, n, *a.shape[1:]), res)

    def solve(self, problem: Problem, y, mask, x_init=None) -> FourDVarResult:
        """The lowest-cost solution per event (a batched :class:`FourDVarResult`)."""
        return best_start(self.solve_all(problem, y, mask, x_init))


@jax.jit
def best_start(res: FourDVarResult) -> FourDVarResult:
    """Per event, the start with the lowest cost."""
    best = jnp.argmin(res.cost, axis=1)
    return jax.tree.map(lambda a: jax.vmap(lambda r, i: r[i])(a, best), res)
