"""The 4DVar cost of one event in the control variable v, x₀ = x_b + B^½ v.

Every solver, the Laplace posterior and the observation sensitivity work in v: the
control-variable transform preconditions the problem (the background term becomes
½‖v‖² and the Gauss–Newton Hessian I + B^{½ᵀ} G′ᵀ R⁻¹ G′ B^½ has every eigenvalue ≥ 1),
and it needs only B^½ and its transpose, never B⁻¹ densely. Nothing here depends on
which forward model the problem holds, so ``problem.with_forward(emulator)`` needs no
change in any solver.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Bool, Float

from ..problems import Problem


def tree_dot(a, b):
    return jnp.vdot(a, b).real


class EventCost(eqx.Module):
    """One event's window: the problem, its observations (unobserved entries zeroed)
    and mask. Methods map between x and v and evaluate J(v) and its linearisation."""

    problem: Problem
    y: Float[Array, "T *obs"]
    mask: Bool[Array, "T *obs"]

    def __init__(self, problem: Problem, y, mask):
        self.problem = problem
        self.mask = jnp.asarray(mask, dtype=bool)
        self.y = jnp.where(self.mask, jnp.asarray(y, dtype=problem.prior.mean.dtype), 0.0)

    # ---- control-variable transform ------------------------------------------------
    def to_state(self, v):
        """x = x_b + B^½ v."""
        return self.problem.prior.mean + self.problem.prior.B_sqrt(v)

    def to_control(self, x):
        """v = B^{−½}(x − x_b), with B^{−½} = B^{½ᵀ} B⁻¹ (no dense inverse)."""
        prior = self.problem.prior
        return prior.B_sqrt_T(prior.B_inv(x - prior.mean))

    # ---- cost --------------------------------------------------------------------------
    def cost(self, v) -> Float[Array, ""]:
        """J(v) = ½‖v‖² + ½ Σ_t ‖m_t ⊙ (y_t − H(M_t(x)))‖²_{R⁻¹}."""
        return 0.5 * tree_dot(v, v) + self.problem.obs_misfit(self.to_state(v), self.y, self.mask)

    def weight(self, r):
        """R⁻¹ r at observed slots, 0 elsewhere (the mask-weighted W of the design)."""
        return jnp.where(self.mask, self.problem.noise.R_inv(r), 0.0)

    def linearize(self, x):
        """(G(x), Z, Zᵀ) at x, with Z u = G′(x) B^½ u and Zᵀ its adjoint (matrix-free,
        one forward linearisation shared by every product)."""
        gx, jvp = jax.linearize(self.problem.window, x)
        vjp = jax.linear_transpose(jvp, x)
        prior = self.problem.prior

        def z(u):
            return jvp(prior.B_sqrt(u))

        def zt(r):
            return prior.B_sqrt_T(vjp(r)[0])

        return gx, z, zt

    def gn_hessian(self, x):
        """u ↦ (I + Zᵀ W Z) u, the Gauss–Newton Hessian in v at x (symmetric, ⪰ I)."""
        _, z, zt = self.linearize(x)
        return lambda u: u + zt(self.weight(z(u))), z, zt


def state_basis(problem: Problem):
    """The n unit vectors of the state, state-shaped: (n, *state)."""
    n = problem.n_state
    return jnp.eye(n, dtype=problem.prior.mean.dtype).reshape(n, *problem.state_shape)


def dense_z(problem: Problem, x) -> Float[Array, "n n_obs"]:
    """Z = G′(x) B^½ as a dense array, row j = Z e_j flattened over (T, *obs)
    (n forward-mode products through one linearisation; small states only)."""
    _, jvp = jax.linearize(problem.window, x)
    return jax.vmap(lambda e: jvp(problem.prior.B_sqrt(e)))(state_basis(problem)).reshape(problem.n_state, -1)


def background_jacobian(problem: Problem) -> Float[Array, "n n_obs"]:
    """Zᵦ = G′(x_b) B^½ (see :func:`dense_z`): the same for every event of a batch, so
    computed once per batch, outside the vmap over events."""
    return dense_z(problem, problem.prior.mean)


def gn_matrix(ev: "EventCost", z_rows) -> Float[Array, "n n"]:
    """The dense Gauss–Newton Hessian in v, I + Zᵀ W Z, from Z's rows (``dense_z``) and
    this event's mask and noise."""
    n = z_rows.shape[0]
    wz = jax.vmap(ev.weight)(z_rows.reshape(n, *ev.y.shape)).reshape(n, -1)
    A = jnp.eye(n, dtype=z_rows.dtype) + z_rows @ wz.T
    return 0.5 * (A + A.T)


class Preconditioner(eqx.Module):
    """P = L Lᵀ = I + Zᵦᵀ W Zᵦ, the Gauss–Newton Hessian in v at the background with
    this event's mask: ``solve`` applies P⁻¹, and v = L⁻ᵀ w maps a further-transformed
    variable w to v (in w the Hessian is close to I where the window is near-linear).
    L and L⁻ᵀ are kept as dense n × n arrays: vmapped over events, matrix products are
    about ten times faster than batched triangular solves on the CPU."""

    chol: Float[Array, "n n"]
    inv_t: Float[Array, "n n"]
    state_shape: tuple[int, ...] = eqx.field(static=True)

    @classmethod
    def build(cls, ev: "EventCost", zb) -> "Preconditioner":
        n = zb.shape[0]
        chol = jnp.linalg.cholesky(gn_matrix(ev, zb))
        inv_t = jsl.solve_triangular(chol, jnp.eye(n, dtype=zb.dtype), lower=True, trans="T")
        return cls(chol, inv_t, ev.problem.state_shape)

    def _flat(self, f, u):
        return f(u.reshape(-1)).reshape(self.state_shape)

    def solve(self, r):
        """P⁻¹ r = L⁻ᵀ L⁻¹ r."""
        return self._flat(lambda a: self.inv_t @ (self.inv_t.T @ a), r)

    def w_to_v(self, w):
        """v = L⁻ᵀ w."""
        return self._flat(lambda a: self.inv_t @ a, w)

    def v_to_w(self, v):
        """w = Lᵀ v."""
        return self._flat(lambda a: self.chol.T @ a, v)

    def grad_w_to_v(self, g_w):
        """∇_v J = L ∇_w J."""
        return self._flat(lambda a: self.chol @ a, g_w)
