"""What every 4DVar solver shares: input checks, batching, jit, the result."""

from __future__ import annotations

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_shape
from ..problems import Problem
from ._result import CONVERGED, NONFINITE, RUNNING, FourDVarResult


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

    Lanes: vmapped, a loop runs as long as its slowest event while the others idle in
    it. A batch of more than ``lanes`` events (a solver setting) therefore runs as a
    conveyor: ``lanes`` events are solved side by side, and a lane whose event finishes
    takes the next event at the following pass, so the batch costs about its events'
    total passes / ``lanes`` plus one tail instead of (B / lanes) × the slowest event's
    passes. Still one jitted program, and each event gets the result it gets solved
    alone (bitwise on lorenz96; up to round-off where batched matrix products of another
    batch size are involved).
    """

    # A solver is four pieces, each for one event (unbatched arrays, jittable and
    # vmappable): ``_setup`` what stays fixed during the solve (a dict; ``shared`` is what
    # ``_prepare`` computed once for the batch), ``_fresh`` the loop state before the
    # first pass, ``_pass`` one loop pass, ``_result`` the FourDVarResult. The state is a
    # dict with at least ``status`` (RUNNING while the loop goes on).

    @abc.abstractmethod
    def _setup(self, problem: Problem, y, mask, x_init, shared) -> dict: ...

    @abc.abstractmethod
    def _fresh(self, setup) -> dict: ...

    @abc.abstractmethod
    def _pass(self, problem: Problem, setup, state) -> dict: ...

    @abc.abstractmethod
    def _result(self, problem: Problem, setup, state) -> FourDVarResult: ...

    def _prepare(self, problem: Problem):
        """Work shared by every event of a batch (traced once per batch, outside the vmap)."""
        return None

    def _solve_one(self, problem: Problem, y, mask, x_init, shared) -> FourDVarResult:
        setup = self._setup(problem, y, mask, x_init, shared)
        state = jax.lax.while_loop(
            lambda c: c["status"] == RUNNING, lambda c: self._pass(problem, setup, c), self._fresh(setup)
        )
        return self._result(problem, setup, state)

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
        return self._run(problem, y, mask, x_init)

    def _run(self, problem: Problem, y, mask, x_init) -> FourDVarResult:
        """The jitted batch solve of checked inputs: one vmapped loop over the events, or
        the lane conveyor for batches of more than ``lanes`` events."""
        lanes = getattr(self, "lanes", None)
        if lanes is None or y.shape[0] <= lanes:
            return _solve_batch(self, problem, y, mask, x_init)
        return _solve_lanes(self, problem, y, mask, x_init)


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


def _take(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


@eqx.filter_jit
def _solve_lanes(solver, problem, y, mask, x_init):
    """B events through ``solver.lanes`` lanes: each loop pass advances every lane by one
    pass; finished events are stored and their lanes refilled in event order."""
    n_events, n_lanes = y.shape[0], solver.lanes
    shared = solver._prepare(problem)
    setups = jax.vmap(solver._setup, in_axes=(None, 0, 0, 0, None))(problem, y, mask, x_init, shared)
    fresh = jax.vmap(solver._fresh)
    step = jax.vmap(solver._pass, in_axes=(None, 0, 0))
    lane_event = jnp.arange(n_lanes)
    state = fresh(_take(setups, lane_event))
    out = jax.tree.map(lambda a: jnp.zeros((n_events, *a.shape[1:]), a.dtype), state)

    def body(carry):
        state, lane_event, live, nxt, out = carry
        state = step(problem, _take(setups, lane_event), state)
        done = live & (state["status"] != RUNNING)
        slot = jnp.where(done, lane_event, n_events)  # out of range: dropped
        out = jax.tree.map(lambda o, a: o.at[slot].set(a, mode="drop"), out, state)
        new_event = nxt + jnp.cumsum(done) - 1
        refill = done & (new_event < n_events)
        lane_event = jnp.where(refill, new_event, lane_event)
        renewed = fresh(_take(setups, lane_event))
        state = jax.tree.map(lambda a, b: jnp.where(refill.reshape(-1, *[1] * (b.ndim - 1)), a, b), renewed, state)
        return state, lane_event, (live & ~done) | refill, nxt + jnp.sum(done), out

    carry = (state, lane_event, jnp.ones(n_lanes, bool), jnp.asarray(n_lanes), out)
    out = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, carry)[-1]
    return jax.vmap(solver._result, in_axes=(None, 0, 0))(problem, setups, out)
