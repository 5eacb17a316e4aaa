"""Incremental 4DVar: Gauss–Newton outer loop, conjugate gradients inside."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..problems import Problem
from ._base import AbstractFourDVar, finish, use_background_preconditioner
from ._cg import cg
from ._control import EventCost, Preconditioner, background_jacobian, tree_dot
from ._result import CONVERGED, MAX_ITERATIONS, NONFINITE, RUNNING, STALLED, FourDVarResult


class IncrementalFourDVar(AbstractFourDVar):
    """Incremental (Gauss–Newton) strong-constraint 4DVar in the control variable.

    Outer iteration k linearises the window operator at x_k = x_b + B^½ v_k
    (``jax.linearize``; its transpose by ``jax.linear_transpose``) and solves the
    quadratic inner problem

        (I + Zᵀ W Z) δv = −∇_v J(v_k),   Z = G′(x_k) B^½,  W = mask ⊙ R⁻¹,

    matrix-free by conjugate gradients (the control-variable transform is the
    preconditioner: the inner matrix has every eigenvalue ≥ 1) to a relative residual
    ``inner_rtol`` or ``max_inner`` iterations. The default ``inner_rtol`` = 0.1 is an
    inexact (truncated) Gauss–Newton step: with a non-zero residual Gauss–Newton
    converges only linearly, and tighter inner solves were measured to buy no fewer
    outer iterations on lorenz96. Pass a small ``inner_rtol`` to solve a linear problem
    in one outer iteration.

    Inner preconditioning (``precondition``): beyond the control-variable transform,
    the background setting preconditions CG with (I + Zᵦᵀ W Zᵦ)⁻¹, the Gauss–Newton
    Hessian at the background x_b with the event's mask (Zᵦ = G′(x_b) B^½ is computed
    once per batch; each event then needs one n × n Cholesky); ``"auto"`` uses it for
    states of at most 64 entries, ``"none"`` never.

    Step length: the Gauss–Newton step (α = 1) and the step α₂ that the secant
    curvature along it predicts (α₂ = −gᵀδv / (∇J(v+δv) − g)ᵀδv, clipped to [0.1, 4])
    are both evaluated; the lower cost that satisfies the Armijo condition wins. α₂
    corrects the Gauss–Newton step where the neglected second-order term of the
    residuals makes it too long or too short: on 256 lorenz96 events it cut the
    slowest event from more than 50 outer iterations to 37. Neither acceptable: α is
    halved from the shorter one (at most ``max_halvings`` times; none found →
    ``STALLED``). All loops are ``lax`` loops; the solver is vmapped over events, and
    inner loops of events already finished are given nothing to do. A batch of more than
    ``lanes`` events runs as a conveyor (see :class:`AbstractFourDVar`).

    Stops with ``CONVERGED`` when ‖∇_v J‖₂ ≤ ``gtol`` (the exact gradient of the
    nonlinear cost), ``MAX_ITERATIONS`` after ``max_outer`` outer iterations,
    ``STALLED`` or ``NONFINITE`` as above. ``iterations`` counts outer iterations,
    ``inner_iterations`` the CG iterations summed over them.
    """

    max_outer: int = eqx.field(static=True, default=50)
    max_inner: int = eqx.field(static=True, default=200)
    gtol: float = eqx.field(static=True, default=1e-6)
    inner_rtol: float = eqx.field(static=True, default=0.1)
    max_halvings: int = eqx.field(static=True, default=10)
    armijo: float = eqx.field(static=True, default=1e-4)
    precondition: str = eqx.field(static=True, default="auto")
    lanes: int | None = eqx.field(static=True, default=256)

    def __check_init__(self):
        if self.precondition not in ("auto", "background", "none"):
            raise ValueError(
                f"IncrementalFourDVar: precondition must be 'auto', 'background' or 'none', got {self.precondition!r}"
            )
        if self.max_outer < 1 or self.max_inner < 1 or self.max_halvings < 0:
            raise ValueError("IncrementalFourDVar: max_outer and max_inner must be >= 1, max_halvings >= 0")
        if not (self.gtol > 0 and self.inner_rtol > 0):
            raise ValueError("IncrementalFourDVar: gtol and inner_rtol must be > 0")
        if self.lanes is not None and self.lanes < 1:
            raise ValueError(f"IncrementalFourDVar: lanes must be >= 1 or None, got {self.lanes}")

    def _prepare(self, problem: Problem):
        return background_jacobian(problem) if use_background_preconditioner(problem, self.precondition) else None

    # The solve in four pieces (see AbstractFourDVar): setup, fresh state, one outer
    # iteration per pass, result.

    def _setup(self, problem: Problem, y, mask, x_init, zb) -> dict:
        ev = EventCost(problem, y, mask)
        pc = None if zb is None else Preconditioner.build(ev, zb)
        return {"y": ev.y, "mask": ev.mask, "x_init": x_init, "pc": pc, "v0": ev.to_control(x_init)}

    def _fresh(self, setup) -> dict:
        v0, zero = setup["v0"], jnp.asarray(0)
        return dict(v=v0, f=jnp.asarray(jnp.inf, v0.dtype), g=jnp.zeros_like(v0), k=zero, inner=zero,
                    status=jnp.asarray(RUNNING), fresh=jnp.asarray(True))

    def _pass(self, problem: Problem, setup, c) -> dict:
        """One outer iteration. The first pass (``fresh``) only evaluates the start point
        (no inner solve, δv = 0): one evaluation site for J and ∇J in the program."""
        ev = EventCost(problem, setup["y"], setup["mask"])
        vg = jax.value_and_grad(ev.cost)
        psolve = None if setup["pc"] is None else setup["pc"].solve
        v, f, g, fresh = c["v"], c["f"], c["g"], c["fresh"]
        tol_f = 8 * jnp.finfo(v.dtype).eps
        # under vmap the pass also runs for finished events: give their inner loops
        # nothing to do, so they never hold the batch's loops open
        active = c["status"] == RUNNING
        hess, _, _ = ev.gn_hessian(ev.to_state(v))
        dv, its, _ = cg(
            hess, -g, rtol=self.inner_rtol, max_iter=jnp.where(active & ~fresh, self.max_inner, 0), precondition=psolve
        )
        slope = tree_dot(g, dv)

        def armijo(alpha, f_t, g_t):
            finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
            return fresh | (finite & (f_t <= f + self.armijo * alpha * slope + tol_f * jnp.abs(f)))

        # Trials, one evaluation of (J, ∇J) each, in one loop: trial 0 is the
        # Gauss–Newton step α = 1, trial 1 the secant step α₂ from trial 0's gradient;
        # the better acceptable one wins; if neither is acceptable, halve from
        # min(1, α₂) until one is (rare). A fresh pass makes one trial, at δv = 0.
        def ls_cond(lc):
            j, ok = lc[0], lc[-1]
            return active & ((j < jnp.where(fresh, 1, 2)) | (~ok & (j < 2 + self.max_halvings)))

        def ls_body(lc):
            j, a2, a_half, alpha, f_t, g_t, ok = lc
            a = jnp.where(j == 0, 1.0, jnp.where(j == 1, a2, a_half))
            f_a, g_a = vg(v + a * dv)
            ok_a = armijo(a, f_a, g_a)
            curv = tree_dot(g_a - g, dv)  # secant curvature along δv (trial 0)
            secant = jnp.where(jnp.isfinite(curv) & (curv > 0), jnp.clip(-slope / curv, 0.1, 4.0), 0.5)
            a2 = jnp.where(j == 0, secant, a2)
            a_half = jnp.where(j == 1, 0.5 * jnp.minimum(1.0, a2), jnp.where(j >= 2, 0.5 * a_half, a_half))
            better = ok_a & (~ok | (f_a < f_t))
            alpha, f_t, g_t = jax.tree.map(lambda p, q: jnp.where(better, p, q), (a, f_a, g_a), (alpha, f_t, g_t))
            return j + 1, a2, a_half, alpha, f_t, g_t, ok | ok_a

        one = jnp.asarray(1.0, v.dtype)
        init = (0, one, 0.5 * one, one, jnp.asarray(jnp.inf, v.dtype), g, jnp.asarray(False))
        *_, alpha, f_t, g_t, ok = jax.lax.while_loop(ls_cond, ls_body, init)
        v, f, g = jax.tree.map(lambda a, b: jnp.where(ok, a, b), (v + alpha * dv, f_t, g_t), (v, f, g))
        gn = jnp.sqrt(tree_dot(g, g))
        k = c["k"] + ~fresh
        finite = jnp.isfinite(f) & jnp.isfinite(gn)
        status = jnp.where(
            fresh & ~finite,
            NONFINITE,
            jnp.where(
                gn <= self.gtol,
                CONVERGED,
                jnp.where(~ok, STALLED, jnp.where(k >= self.max_outer, MAX_ITERATIONS, RUNNING)),
            ),
        )
        return dict(v=v, f=f, g=g, k=k, inner=c["inner"] + its, status=status, fresh=jnp.zeros_like(fresh))

    def _result(self, problem: Problem, setup, c) -> FourDVarResult:
        x = EventCost(problem, setup["y"], setup["mask"]).to_state(c["v"])
        gn = jnp.sqrt(tree_dot(c["g"], c["g"]))
        return finish(setup["x_init"], x, c["f"], gn, c["k"], c["status"], inner=c["inner"])
