"""The Laplace posterior at the 4DVar minimum, from the Gauss–Newton Hessian.

In the control variable v (x = x_b + B^½ v) the Gauss–Newton Hessian of J is

    A = I + Zᵀ W Z,   Z = G′(x*) B^½,   W = mask ⊙ R⁻¹,

so the posterior covariance is P = B^½ A⁻¹ B^{½ᵀ} (= (B⁻¹ + G′ᵀ W G′)⁻¹).

- ``dense`` (small states): Z by n forward-mode products, A by Cholesky, P = F Fᵀ with
  F = B^½ L_A^{−ᵀ}; the posterior carries the Cholesky factor of P.
- ``lowrank`` (large states, e.g. the 2D problem): eigenpairs (λ_i, u_i) of the
  data-misfit Hessian Zᵀ W Z by a randomised range finder and Rayleigh–Ritz
  (Halko, Martinsson & Tropp 2011), matrix-free; then
  P = B − Σ_i λ_i/(1+λ_i) (B^½ u_i)(B^½ u_i)ᵀ (the "prior minus low-rank" form). Its rank
  is at most the number of observation slots, so ``rank=None`` (that number) keeps
  every direction the data inform and P, and the std, are exact up to round-off;
  a smaller ``rank`` keeps the leading directions (std then slightly too large).
  Batched sketches all events share: the probe matrix is drawn from a fixed key.
  The posterior carries mean and std; the covariance stays available matrix-free as
  a :class:`LowRankLaplaceCovariance` (``laplace_covariance``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float, PRNGKeyArray

from ..posterior import Posterior
from ..problems import Problem
from ._base import check_x
from ._control import EventCost, dense_z, gn_matrix, state_basis

#: States up to this size get a dense covariance by default (and a stored ``cov_chol``).
DENSE_MAX_STATE = 64
#: Extra probe vectors of the randomised range finder.
OVERSAMPLE = 10
#: Events per step of the sequential map over events for the low-rank form (memory bound).
LOWRANK_EVENTS_PER_STEP = 4


def _dense_one(problem: Problem, x, y, mask):
    """(mean-shaped std, Cholesky factor of P) for one event."""
    ev = EventCost(problem, y, mask)
    n = problem.n_state
    L_A = jnp.linalg.cholesky(gn_matrix(ev, dense_z(problem, x)))
    S = jax.vmap(problem.prior.B_sqrt)(state_basis(problem)).reshape(n, n).T  # columns B^½ e_j
    F = jsl.solve_triangular(L_A, S.T, lower=True).T  # B^½ L_A^{-T}
    cov = F @ F.T
    chol = jnp.linalg.cholesky(0.5 * (cov + cov.T))
    std = jnp.sqrt(jnp.sum(chol**2, axis=1)).reshape(problem.state_shape)
    return std, chol


def _sketch_size(problem: Problem, rank: int | None) -> tuple[int, int]:
    n, m = problem.n_state, problem.n_obs
    k = min(n, m) if rank is None else int(rank)
    if not 1 <= k <= n:
        raise ValueError(f"`rank` must be in [1, {n}], got {rank}")
    return k, min(n, k + OVERSAMPLE)


def _probes(problem: Problem, size: int):
    return jax.random.normal(jax.random.key(0), (size, *problem.state_shape), dtype=problem.prior.mean.dtype)


def _lowrank_one(problem: Problem, x, y, mask, probes, k: int):
    """(λ (k,), B^½ U (k, *state)) of the data-misfit Hessian at x for one event."""
    ev = EventCost(problem, y, mask)
    _, z, zt = ev.linearize(x)

    def hd(u):
        return zt(ev.weight(z(u)))

    n = problem.n_state
    l = probes.shape[0]
    Y = jax.vmap(hd)(probes).reshape(l, n)
    Q, _ = jnp.linalg.qr(Y.T)  # (n, l) orthonormal basis of the sketched range
    HQ = jax.vmap(hd)(Q.T.reshape(l, *problem.state_shape)).reshape(l, n)
    T = Q.T @ HQ.T
    lam, V = jnp.linalg.eigh(0.5 * (T + T.T))
    lam, V = jnp.clip(lam[-k:], 0.0), V[:, -k:]
    U = (Q @ V).T.reshape(k, *problem.state_shape)
    return lam, jax.vmap(problem.prior.B_sqrt)(U)


class LowRankLaplaceCovariance(eqx.Module):
    """Batched Laplace covariances in the prior-minus-low-rank form

        P_b = B − Σ_i d_bi w_bi w_biᵀ,   d = λ/(1+λ),  w_i = B^½ u_i,

    applied matrix-free (``mv``), with exact marginal variances (``variance``), draws
    (``sample``, through P^½ = B^½ (I − U diag(1 − (1+λ)^{−½}) Uᵀ)) and, for tests on
    small grids, ``as_matrix``.
    """

    problem: Problem
    lam: Float[Array, "B k"]
    w: Float[Array, "B k *state"]

    @property
    def n_events(self) -> int:
        return int(self.lam.shape[0])

    def _flat_w(self):
        return self.w.reshape(self.w.shape[0], self.w.shape[1], -1)

    def mv(self, v: Float[Array, "B *state"]) -> Float[Array, "B *state"]:
        """P_b v_b for every event."""
        d = self.lam / (1.0 + self.lam)
        W = self._flat_w()
        coef = d * jnp.einsum("bkn,bn->bk", W, v.reshape(v.shape[0], -1))
        return jax.vmap(self.problem.prior.B)(v) - jnp.einsum("bk,bkn->bn", coef, W).reshape(v.shape)

    def variance(self) -> Float[Array, "B *state"]:
        d = self.lam / (1.0 + self.lam)
        prior_var = self.problem.prior.cov.variance().reshape(-1)
        var = prior_var - jnp.einsum("bk,bkn->bn", d, self._flat_w() ** 2)
        return var.reshape(self.lam.shape[0], *self.problem.state_shape)

    def std(self) -> Float[Array, "B *state"]:
        return jnp.sqrt(jnp.maximum(self.variance(), 0.0))

    def as_matrix(self) -> Float[Array, "B n n"]:
        n = self.problem.n_state
        basis = state_basis(self.problem)
        cols = jax.vmap(lambda e: self.mv(jnp.broadcast_to(e, (self.n_events, *e.shape))))(basis)
        return jnp.moveaxis(cols.reshape(n, self.n_events, n), 0, -1)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "B n *state"]:
        """Zero-mean draws from N(0, P_b), (B, n, *state)."""
        prior = self.problem.prior
        c = 1.0 - 1.0 / jnp.sqrt(1.0 + self.lam)  # (B, k)
        z = jax.random.normal(key, (self.n_events, n, *self.problem.state_shape), dtype=self.lam.dtype)
        W = self._flat_w()
        # B^½ U = W, so B^½ (z − U c Uᵀ z) = B^½ z − W c (Uᵀ z); Uᵀ z needs U = B^{−½} W
        U = jax.vmap(jax.vmap(lambda w: prior.B_sqrt_T(prior.B_inv(w))))(self.w).reshape(W.shape)
        coef = c[:, None, :] * jnp.einsum("bkn,bsn->bsk", U, z.reshape(self.n_events, n, -1))
        sz = jax.vmap(jax.vmap(prior.B_sqrt))(z).reshape(self.n_events, n, -1)
        return (sz - jnp.einsum("bsk,bkn->bsn", coef, W)).reshape(z.shape)


def _resolve_method(problem: Problem, method: str) -> str:
    if method == "auto":
        return "dense" if problem.n_state <= DENSE_MAX_STATE else "lowrank"
    if method not in ("dense", "lowrank"):
        raise ValueError(f"`method` must be 'auto', 'dense' or 'lowrank', got {method!r}")
    return method


def _check(problem: Problem, x_star, y, mask):
    y, mask = problem.check_observations(y, mask, batched=True)
    x_star = check_x(problem, x_star, y.shape[0], "x_star")
    return x_star, jnp.asarray(y, dtype=x_star.dtype), mask


@eqx.filter_jit
def _dense_batch(problem, x, y, mask):
    return jax.vmap(_dense_one, in_axes=(None, 0, 0, 0))(problem, x, y, mask)


@eqx.filter_jit
def _lowrank_batch(problem, x, y, mask, probes, k):
    return jax.lax.map(
        lambda a: _lowrank_one(problem, *a, probes, k), (x, y, mask), batch_size=LOWRANK_EVENTS_PER_STEP
    )


def laplace_covariance(problem: Problem, x_star, y, mask, *, rank: int | None = None) -> LowRankLaplaceCovariance:
    """The batched Laplace covariance at minimisers ``x_star`` (B, *state) in the
    prior-minus-low-rank form, matrix-free (see the module docstring)."""
    x_star, y, mask = _check(problem, x_star, y, mask)
    k, size = _sketch_size(problem, rank)
    lam, w = _lowrank_batch(problem, x_star, y, mask, _probes(problem, size), k)
    return LowRankLaplaceCovariance(problem, lam, w)


def laplace_posterior(
    problem: Problem, x_star, y, mask, *, method: str = "auto", rank: int | None = None
) -> Posterior:
    """The Laplace (Gauss–Newton) posterior N(x*, P) for B events.

    ``x_star``: (B, *state) minimisers (e.g. ``FourDVarResult.x``); ``y``, ``mask``:
    (B, T, *obs). ``method``: ``"dense"`` (posterior with ``cov_factor`` = Cholesky of
    P, ``cov_kind == "dense"``), ``"lowrank"`` (mean and exact std; the covariance via
    :func:`laplace_covariance`), or ``"auto"`` (dense up to ``DENSE_MAX_STATE`` state
    entries). ``rank`` applies to ``lowrank`` only.
    """
    method = _resolve_method(problem, method)
    if method == "dense" and rank is not None:
        raise ValueError("`rank` applies to method='lowrank' only")
    x_star, y, mask = _check(problem, x_star, y, mask)
    provenance = {"method": f"laplace-{method}", "hessian": "gauss-newton", "problem": problem.name}
    if method == "dense":
        std, chol = _dense_batch(problem, x_star, y, mask)
        return Posterior.create(x_star, std=std, cov_factor=chol, provenance=provenance)
    cov = laplace_covariance(problem, x_star, y, mask, rank=rank)
    k, size = _sketch_size(problem, rank)
    provenance.update(rank=k, sketch=size, full_rank=rank is None or k >= min(problem.n_state, problem.n_obs))
    return Posterior.create(x_star, std=cov.std(), provenance=provenance)

