"""What every 4DVar solver shares: input checks, batching, jit, the result."""

from __future__ import annotations

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_shape
from ..problems import Problem
from ._result import CONVERGED, NONFINITE, FourDVarResult


def check_x(problem: Problem, x, batch: int, name: str = "x_init"):
    """A start point (or minimiser): ``(B, *state)``, or ``(*state)`` broadcast over the
    batch; must be finite when concrete."""
    x = jnp.asarray(x, dtype=problem.prior.mean.dtype)
    if x.shape == problem.state_shape:
        x = jnp.broadcast_to(x, (batch, *problem.state_shape))
    check_shape(name, x, (batch, *problem.state_shape), "events, *state")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"`{name}` has non-finite values")
    return x


def finish(x0, x, cost, grad_norm, iterations, reason, inner=0) -> FourDVarResult:
    """One event's result, made safe: a non-finite minimiser falls back to the start
    point and is flagged ``NONFINITE``; a non-finite cost or gradient norm reads ``inf``."""
    finite = jnp.all(jnp.isfinite(x)) & jnp.isfinite(cost) & jnp.isfinite(grad_norm)
    reason = jnp.where(finite, reason, NONFINITE)
    return FourDVarResult(
        x=jnp.where(finite, x, x0),
        cost=jnp.where(jnp.isfinite(cost), cost, jnp.inf),
        grad_norm=jnp.where(jnp.isfinite(grad_norm), grad_norm, jnp.inf),
        iterations=jnp.asarray(iterations, dtype=jnp.int32),
        converged=reason == CONVERGED,
        reason=jnp.asarray(reason, dtype=jnp.int32),
        inner_iterations=jnp.asarray(inner, dtype=jnp.int32),
    )


class AbstractFourDVar(eqx.Module):
    """A strong-constraint 4DVar solver: settings as (static) fields, ``solve`` batched.

    ``solve(problem, y, mask, x_init=None)`` checks the inputs on the host (shapes,
    boolean mask, finite observed values, finite start), then runs one jitted, vmapped
    program over the B events. The problem is a traced argument: a second batch of the
    same shapes — or the same problem with another forward model of the same structure
    (``problem.with_forward(emulator)`` with new weights) — reuses the compiled program.
    """

    @abc.abstractmethod
    def _solve_one(self, problem: Problem, y, mask, x_init, shared) -> FourDVarResult:
        """Solve one event (unbatched arrays); must be jittable and vmappable.
        ``shared`` is what :meth:`_prepare` computed once for the batch."""

    def _prepare(self, problem: Problem):
        """Work shared by every event of a batch (traced once per batch, outside the vmap)."""
        return None

    def config(self) -> dict:
        """The solver's settings (JSON-serialisable), for provenance and store attrs."""
        return {"solver": type(self).__name__, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    def solve(self, problem: Problem, y, mask, x_init=None) -> FourDVarResult:
        """Solve B events: ``y``, ``mask`` of shape (B, T, *obs); ``x_init`` (B, *state),
        (*state) or None (the background x_b). Returns a batched :class:`FourDVarResult`."""
        y, mask = problem.check_observations(y, mask, batched=True)
        y = jnp.asarray(y, dtype=problem.prior.mean.dtype)
        batch = y.shape[0]
        x_init = check_x(problem, problem.prior.mean if x_init is None else x_init, batch)
        return _solve_batch(self, problem, y, mask, x_init)


def use_background_preconditioner(problem: Problem, precondition: str) -> bool:
    """Resolve a solver's ``precondition`` setting: ``"background"`` (dense Gauss–Newton
    Hessian at x_b per event), ``"none"``, or ``"auto"`` (background for states of at
    most ``PRECONDITION_MAX_STATE`` entries)."""
    if precondition not in ("auto", "background", "none"):
        raise ValueError(f"`precondition` must be 'auto', 'background' or 'none', got {precondition!r}")
    return precondition == "background" or (precondition == "auto" and problem.n_state <= PRECONDITION_MAX_STATE)


#: ``precondition="auto"`` uses the background preconditioner up to this state size.
PRECONDITION_MAX_STATE = 64


@eqx.filter_jit
def _solve_batch(solver, problem, y, mask, x_init):
    shared = solver._prepare(problem)
    return jax.vmap(solver._solve_one, in_axes=(None, 0, 0, 0, None))(problem, y, mask, x_init, shared)
