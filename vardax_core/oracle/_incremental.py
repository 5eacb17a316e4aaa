"""Incremental 4DVar: Gauss–Newton outer loop, conjugate gradients inside."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..problems import Problem
from ._base import AbstractFourDVar, finish, use_background_preconditioner
from ._cg import cg
from ._control import EventCost, Preconditioner, background_jacobian, tree_dot
from ._result import CONVERGED, MAX_ITERATIONS, NONFINITE, RUNNING, STALLED


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
    inner loops of events already finished are given nothing to do.

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

    def __check_init__(self):
        if self.precondition not in ("auto", "background", "none"):
            raise ValueError(
                f"IncrementalFourDVar: precondition must be 'auto', 'background' or 'none', got {self.precondition!r}"
            )
        if self.max_outer < 1 or self.max_inner < 1 or self.max_halvings < 0:
            raise ValueError("IncrementalFourDVar: max_outer and max_inner must be >= 1, max_halvings >= 0")
        if not (self.gtol > 0 and self.inner_rtol > 0):
            raise ValueError("IncrementalFourDVar: gtol and inner_rtol must be > 0")

    def _prepare(self, problem: Problem):
        return background_jacobian(problem) if use_background_preconditioner(problem, self.precondition) else None

    def _solve_one(self, problem: Problem, y, mask, x_init, zb):
        ev = EventCost(problem, y, mask)
        psolve = None if zb is None else Preconditioner.build(ev, zb).solve
        vg = jax.value_and_grad(ev.cost)
        v0 = ev.to_control(x_init)
        f0, g0 = vg(v0)
        gn0 = jnp.sqrt(tree_dot(g0, g0))
        status0 = jnp.where(
            ~(jnp.isfinite(f0) & jnp.isfinite(gn0)), NONFINITE, jnp.where(gn0 <= self.gtol, CONVERGED, RUNNING)
        )
        tol_f = 8 * jnp.finfo(v0.dtype).eps

        def cond(c):
            return c[-1] == RUNNING

        def body(c):
            v, f, g, _, k, inner, status = c
            # under vmap the body also runs for finished events: give their inner
            # loops nothing to do, so they never hold the batch's loops open
            active = status == RUNNING
            hess, _, _ = ev.gn_hessian(ev.to_state(v))
            dv, its, _ = cg(
                hess, -g, rtol=self.inner_rtol, max_iter=jnp.where(active, self.max_inner, 0), precondition=psolve
            )
            slope = tree_dot(g, dv)

            def armijo(alpha, f_t, g_t):
                return (
                    jnp.isfinite(f_t)
                    & jnp.all(jnp.isfinite(g_t))
                    & (f_t <= f + self.armijo * alpha * slope + tol_f * jnp.abs(f))
                )

            # Trials, one evaluation of (J, ∇J) each, in one loop (one evaluation site in
            # the program, which keeps XLA's compile time down): trial 0 is the
            # Gauss–Newton step α = 1, trial 1 the secant step α₂ from trial 0's gradient;
            # the better acceptable one wins; if neither is acceptable, halve from
            # min(1, α₂) until one is (rare).
            def ls_cond(lc):
                j, ok = lc[0], lc[-1]
                return active & ((j < 2) | (~ok & (j < 2 + self.max_halvings)))

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

            one = jnp.asarray(1.0, f.dtype)
            init = (0, one, 0.5 * one, one, jnp.asarray(jnp.inf, f.dtype), g, jnp.asarray(False))
            *_, alpha, f_t, g_t, ok = jax.lax.while_loop(ls_cond, ls_body, init)
            v, f, g = jax.tree.map(lambda a, b: jnp.where(ok, a, b), (v + alpha * dv, f_t, g_t), (v, f, g))
            gn = jnp.sqrt(tree_dot(g, g))
            k = k + 1
            status = jnp.where(
                gn <= self.gtol,
                CONVERGED,
                jnp.where(~ok, STALLED, jnp.where(k >= self.max_outer, MAX_ITERATIONS, RUNNING)),
            )
            return v, f, g, gn, k, inner + its, status

        init = (v0, f0, g0, gn0, jnp.asarray(0), jnp.asarray(0), status0)
        v, f, _, gn, k, inner, status = jax.lax.while_loop(cond, body, init)
        return finish(x_init, ev.to_state(v), f, gn, k, status, inner=inner)
