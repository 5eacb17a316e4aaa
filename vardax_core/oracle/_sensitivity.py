"""Observation sensitivity ∂x*/∂y of the 4DVar minimum (implicit function theorem).

At the minimum, ∇_v J(v*, y) = 0. Differentiating in y with the Gauss–Newton Hessian
A = I + Zᵀ W Z (Z = G′(x*) B^½, W = mask ⊙ R⁻¹) gives

    ∂x*/∂y = B^½ A⁻¹ Zᵀ W  = (B⁻¹ + G′ᵀ W G′)⁻¹ G′ᵀ W,

the Kalman gain for a linear problem. Both products below solve one system with A by
conjugate gradients, matrix-free (one linearisation of the window, jvp and its
transpose); no Jacobian is formed. Single-event functions: jittable, vmappable.

The Gauss–Newton form is the design's definition of the oracle's ∂x*/∂y and is exact
for a linear window. For a nonlinear one it drops the residual curvature Σ rᵢ ∇²Gᵢ of the
Hessian, so it is *not* the derivative of the 4DVar minimiser: on lorenz96 (default
configuration) it differs from re-solving with perturbed observations by about 10–20%
(measured, tests/oracle/test_analysis.py). ``hessian="exact"`` uses the full Hessian of J
(Hessian-vector products by forward-over-reverse differentiation) and gives that
derivative; it needs x* to be a strict local minimum (the Hessian positive definite).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ..problems import Problem
from ._cg import cg
from ._control import EventCost

#: Default relative residual of the conjugate-gradient solves.
SENSITIVITY_RTOL = 1e-10


def _max_iter(problem: Problem, max_iter: int | None) -> int:
    return max(100, 2 * problem.n_state) if max_iter is None else int(max_iter)


def _hessian(ev: EventCost, x_star, hessian: str):
    """(u ↦ A u, Z, Zᵀ) at x* for the Gauss–Newton or the exact Hessian in v."""
    gn, z, zt = ev.gn_hessian(x_star)
    if hessian == "gauss-newton":
        return gn, z, zt
    if hessian == "exact":
        grad = jax.grad(ev.cost)
        v_star = ev.to_control(x_star)
        return (lambda u: jax.jvp(grad, (v_star,), (u,))[1]), z, zt
    raise ValueError(f"`hessian` must be 'gauss-newton' or 'exact', got {hessian!r}")


def sensitivity_jvp(
    problem: Problem,
    x_star: Float[Array, "*state"],
    y: Float[Array, "T *obs"],
    mask: Bool[Array, "T *obs"],
    dy: Float[Array, "T *obs"],
    *,
    rtol: float = SENSITIVITY_RTOL,
    max_iter: int | None = None,
    hessian: str = "gauss-newton",
) -> Float[Array, "*state"]:
    """(∂x*/∂y) dy for one event: the change of the analysis for a change ``dy`` of the
    observations (entries at unobserved slots are ignored). ``y`` enters only through
    ``x_star``: the Gauss–Newton Hessian does not depend on it."""
    ev = EventCost(problem, y, mask)
    hess, _, zt = _hessian(ev, x_star, hessian)
    rhs = zt(ev.weight(jnp.where(ev.mask, dy, 0.0)))
    u, _, _ = cg(hess, rhs, rtol=rtol, max_iter=_max_iter(problem, max_iter))
    return problem.prior.B_sqrt(u)


def sensitivity_vjp(
    problem: Problem,
    x_star: Float[Array, "*state"],
    y: Float[Array, "T *obs"],
    mask: Bool[Array, "T *obs"],
    dx: Float[Array, "*state"],
    *,
    rtol: float = SENSITIVITY_RTOL,
    max_iter: int | None = None,
    hessian: str = "gauss-newton",
) -> Float[Array, "T *obs"]:
    """(∂x*/∂y)ᵀ dx for one event: the observation-space adjoint of a state-space
    direction ``dx``; exactly zero at unobserved slots."""
    ev = EventCost(problem, y, mask)
    hess, z, _ = _hessian(ev, x_star, hessian)
    u, _, _ = cg(hess, problem.prior.B_sqrt_T(dx), rtol=rtol, max_iter=_max_iter(problem, max_iter))
    return ev.weight(z(u))


def sensitivity_matrix(
    problem: Problem,
    x_star: Float[Array, "*state"],
    y: Float[Array, "T *obs"],
    mask: Bool[Array, "T *obs"],
    *,
    hessian: str = "exact",
) -> Float[Array, "*state T *obs"]:
    """The dense ∂x*/∂y of one event, (*state, T, *obs); columns at unobserved slots are 0.

    In the control variable v (x = x_b + B^½ v) the implicit function theorem gives

        ∂x*/∂y = B^½ A⁻¹ Zᵀ W,   Z = G′(x*) B^½,  W = mask ⊙ R⁻¹,

    with A the exact Hessian ∇²_v J(v*) (``hessian="exact"``, the derivative of the
    minimiser y ↦ x*(y)) or the Gauss–Newton one I + Zᵀ W Z. Z is formed by n
    forward-mode products, the exact Hessian by ``jax.hessian`` and the system solved by
    ``jnp.linalg.solve``: O(n² m) work, for small states (n up to a few hundred).
    """
    from ._control import dense_z, gn_matrix

    if hessian not in ("gauss-newton", "exact"):
        raise ValueError(f"`hessian` must be 'gauss-newton' or 'exact', got {hessian!r}")
    ev = EventCost(problem, y, mask)
    n, y_shape = problem.n_state, ev.y.shape
    z_rows = dense_z(problem, x_star)  # (n, m): row j = Z e_j
    ztw = jax.vmap(ev.weight)(z_rows.reshape(n, *y_shape)).reshape(n, -1)  # Zᵀ W (W symmetric)
    if hessian == "exact":
        v_star = ev.to_control(x_star)
        A = jax.hessian(ev.cost)(v_star).reshape(n, n)
        A = 0.5 * (A + A.T)
    else:
        A = gn_matrix(ev, z_rows)
    jv = jnp.linalg.solve(A, ztw)  # (n, m)
    cols = jax.vmap(lambda c: problem.prior.B_sqrt(c.reshape(problem.state_shape)).reshape(-1))(jv.T)  # (m, n)
    return cols.T.reshape(*problem.state_shape, *y_shape)
