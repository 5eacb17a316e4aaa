"""Jacobian-aware training: the Gaussian-noise identity as a consistency penalty.

For observations y = G(x₀) + ε with ε ~ N(0, R) (missing slots masked by P = diag(m)),
differentiating the posterior in y gives, for *any* nonlinear window G,

    J(y) = ∂E[x₀ | y]/∂y = Cov(x₀, G(x₀) | y) W,        W = P R⁻¹ P.

A head q(x₀ | y) that is the posterior satisfies the same identity with its own moments,
so its point estimate (its mean) must have the Jacobian its own spread implies. The
penalty asks that of the head, in network units (x = x̄ + S u, ỹ = (y − ȳ)/s_y):

    ∂u/∂ỹ  ≈  T = Cov_q(u, G(x(u))) W diag(s_y),

projected on a random direction ξ ~ N(0, P) so that one forward-mode product replaces
the full Jacobian (E_ξ ‖(∂u/∂ỹ − T) ξ‖² = ‖∂u/∂ỹ − T‖²_F):

    penalty = weight · E_events E_ξ ‖(∂u/∂ỹ) ξ − sg(T ξ)‖² / n.

For a Gaussian head, Cov_q(u, G) = Σ_u Sᵀ E_q[G'(x)]ᵀ (Stein's lemma), with E_q[G'] the
mean of the tangent operators at ``n_samples`` antithetic draws of the head; for other
heads, the sample cross-covariance of ``n_samples`` antithetic draws. The target T is
held fixed (``stop_gradient``): the spread is learned by the likelihood, the penalty
only pulls the point estimate's Jacobian onto what that spread implies. On the default
lorenz96 problem the moment-matched Gaussian satisfies the identity within Monte-Carlo
error of the MCMC reference (benchmarks/_probe_jacobian_identity.py), so the target is the right
one for a Gaussian head whose first two moments are right.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import DataclassConfig
from ._nets import DTYPES


@dataclasses.dataclass(frozen=True)
class ConsistencyConfig(DataclassConfig):
    """The Jacobian-consistency penalty: ``weight`` λ (0 switches it off), the number of
    events per batch it is evaluated on (``n_events``, the first ones of each batch) and
    the head draws per event behind its target (``n_samples``, even: antithetic pairs)."""

    weight: float = 1.0
    n_events: int = 64
    n_samples: int = 8

    def __post_init__(self):
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not self.weight >= 0:
            raise ValueError(f"ConsistencyConfig: `weight` must be a number >= 0, got {self.weight!r}")
        for name in ("n_events", "n_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ConsistencyConfig: `{name}` must be a positive integer, got {v!r}")
        if self.n_samples % 2:
            raise ValueError(f"ConsistencyConfig: `n_samples` must be even (antithetic pairs), got {self.n_samples}")


class JacobianConsistency(eqx.Module):
    """The penalty for one problem (its window G and noise R) and a :class:`ConsistencyConfig`."""

    problem: eqx.Module
    weight: float = eqx.field(static=True)
    n_events: int = eqx.field(static=True)
    n_samples: int = eqx.field(static=True)

    def __init__(self, problem, config: ConsistencyConfig):
        self.problem = problem
        self.weight, self.n_events, self.n_samples = float(config.weight), config.n_events, config.n_samples

    def _one(self, model, ys, mask, key):
        """‖(∂u/∂ỹ) ξ − sg(T ξ)‖² / n for one event: ys (n_obs,) standardised, mask (T, *obs)."""
        k_xi, k_draw = jax.random.split(key)
        xi = jax.random.normal(k_xi, ys.shape, ys.dtype) * mask.reshape(-1).astype(ys.dtype)
        j_xi, target = self.products(model, ys, mask, xi, k_draw)
        return jnp.mean((j_xi - target) ** 2)

    def products(self, model, ys, mask, xi, key):
        """((∂u/∂ỹ) ξ, sg(T ξ)) for one event and a direction ξ (n_obs,), both (n,)."""
        p, st, head = self.problem, model.standardizer, model.head
        m = mask.reshape(-1).astype(ys.dtype)

        def mean_u(yy):
            f = model.encoder(yy.reshape(mask.shape), mask)
            return head.point((f, yy, m))

        _, j_xi = jax.jvp(mean_u, (ys,), (xi,))
        c = jax.lax.stop_gradient((model.encoder(ys.reshape(mask.shape), mask), ys, m))
        arrays, static = eqx.partition(head, eqx.is_array)
        h = eqx.combine(jax.lax.stop_gradient(arrays), static)
        # W diag(s_y) ξ in observation units, (T, *obs)
        w = jnp.where(mask, p.noise.R_inv((st.y_std * xi.astype(st.y_std.dtype)).reshape(mask.shape)), 0.0)
        gauss = h.gaussian(c)
        half = h.sample(c, key, self.n_samples // 2)
        mean = h.point(c) if gauss is None else gauss[0]
        u = jnp.concatenate([half, 2 * mean - half])  # antithetic about the head's mean
        x = jax.vmap(lambda uu: st.x_from_std(uu).reshape(p.state_shape))(u)
        if gauss is not None:
            # Stein: Cov_q(u, wᵀG) = Σ_u Sᵀ E_q[G'(x)ᵀ w]
            gw = jnp.mean(jax.vmap(lambda xx: jax.vjp(p.window, xx)[1](w)[0].reshape(-1))(x), axis=0)
            a = st.x_std * gw if st.x_chol is None else st.x_chol.T @ gw
            a = a.astype(mean.dtype)
            _, F, d = gauss
            target = (F @ (F.T @ a) if F is not None else 0.0) + (d * a if d is not None else 0.0)
        else:
            hw = jax.vmap(lambda xx: jnp.sum(w * p.window(xx)))(x).astype(u.dtype)
            target = (u - jnp.mean(u, axis=0)).T @ (hw - jnp.mean(hw)) / (u.shape[0] - 1)
        return j_xi, jax.lax.stop_gradient(target)

    def __call__(self, model, y, mask, key):
        """λ × the mean penalty over the first ``n_events`` events of the batch y (B, T, *obs)."""
        k = min(self.n_events, y.shape[0])
        y, mask = y[:k], mask[:k]
        m = mask.reshape(k, -1)
        ys = model.standardizer.y_to_std(y.reshape(k, -1), m).astype(DTYPES[model.dtype])
        vals = jax.vmap(lambda a, b, kk: self._one(model, a, b, kk))(ys, mask, jax.random.split(key, k))
        return self.weight * jnp.mean(vals.astype(jnp.float64))
