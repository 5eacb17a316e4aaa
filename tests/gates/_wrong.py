"""Deliberately wrong posteriors, built around the exact linear-Gaussian posterior.

Each wraps a posterior that follows the protocol and breaks one thing only:

- :class:`RandomShift`: mean off by σ ⊙ ξ, ξ ~ N(0, I) per event (1 σ RMS) — agreement;
- :class:`UniformShift`: mean off by exactly ``k`` σ in every component — agreement's
  boundary semantics;
- :class:`ScaledCovariance`: covariance × c around the right mean — SBC;
- :class:`ScaledJacobian`: the same point estimates, ∂x̂/∂y × s — adjoint calibration;
- :class:`ShiftedPosterior`: the whole distribution (estimate, draws, density) moved by
  k σ in every component — one consistent but wrong posterior — SBC and agreement;
- :class:`BiasedSampler`: the right estimate and density, draws moved by k σ — SBC;
- :class:`DiagonalApproximation`: N(μ, diag Σ), the exact marginals without their
  correlations — SBC's joint statistics (observation misfit, log q);
- :class:`Broken`: non-finite estimates, draws, log densities or Jacobians.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl


def marginal_std(base, y, mask):
    """(B, n) exact marginal posterior standard deviations of the wrapped exact posterior."""

    def one(yy, mm):
        _, chol = base._one(yy, mm)
        cov = jsl.cho_solve((chol, True), jnp.eye(chol.shape[0]))
        return jnp.sqrt(jnp.diag(cov))

    return jax.vmap(one)(y, mask)


def _event_key(key, y, mask):
    """A key that depends on the event's observations only (deterministic per event)."""
    w = jnp.arange(1, y.size + 1, dtype=jnp.float64).reshape(y.shape)
    s = jnp.sum(jnp.where(mask, y, 0.0) * w).astype(jnp.float64)
    bits = jax.lax.bitcast_convert_type(s, jnp.uint32)
    return jax.random.fold_in(jax.random.fold_in(key, bits[0]), bits[1])


class _Wrapper(eqx.Module):
    base: eqx.Module

    @property
    def has_density(self):
        return self.base.has_density

    def __call__(self, y, mask):
        return self.base(y, mask)

    def sample(self, y, mask, key, n):
        return self.base.sample(y, mask, key, n)

    def log_prob(self, x, y, mask):
        return self.base.log_prob(x, y, mask)


class RandomShift(_Wrapper):
    """Point estimate μ + σ ⊙ ξ with ξ ~ N(0, I) drawn per event (from ``key`` and y)."""

    key: jax.Array

    def __call__(self, y, mask):
        mu = self.base(y, mask)
        sd = marginal_std(self.base, y, mask)
        xi = jax.vmap(lambda yy, mm: jax.random.normal(_event_key(self.key, yy, mm), (sd.shape[1],)))(y, mask)
        return mu + jax.lax.stop_gradient(sd * xi).reshape(mu.shape)


class UniformShift(_Wrapper):
    """Point estimate μ + k σ in every component."""

    k: jax.Array

    def __call__(self, y, mask):
        mu = self.base(y, mask)
        return mu + self.k * marginal_std(self.base, y, mask).reshape(mu.shape)


class ScaledCovariance(_Wrapper):
    """N(μ, c Σ): draws μ + √c (x − μ), density log p(μ + (x − μ)/√c) − (n/2) log c."""

    c: jax.Array

    def sample(self, y, mask, key, n):
        mu = self.base(y, mask)[:, None]
        return mu + jnp.sqrt(self.c) * (self.base.sample(y, mask, key, n) - mu)

    def log_prob(self, x, y, mask):
        mu = self.base(y, mask)
        n = mu[0].size
        return self.base.log_prob(mu + (x - mu) / jnp.sqrt(self.c), y, mask) - 0.5 * n * jnp.log(self.c)


class ShiftedPosterior(_Wrapper):
    """N(μ + k σ, Σ): estimate, draws and density all shifted by k marginal σ."""

    k: jax.Array

    def _shift(self, y, mask):
        return self.k * marginal_std(self.base, y, mask)

    def __call__(self, y, mask):
        mu = self.base(y, mask)
        return mu + self._shift(y, mask).reshape(mu.shape)

    def sample(self, y, mask, key, n):
        d = self.base.sample(y, mask, key, n)
        return d + self._shift(y, mask).reshape(d.shape[0], 1, *d.shape[2:])

    def log_prob(self, x, y, mask):
        return self.base.log_prob(x - self._shift(y, mask).reshape(x.shape), y, mask)


class BiasedSampler(ShiftedPosterior):
    """The right point estimate and density, but a sampler whose draws are shifted by k σ."""

    def __call__(self, y, mask):
        return self.base(y, mask)


class DiagonalApproximation(_Wrapper):
    """N(μ, diag Σ): the right estimate and marginals, every correlation dropped (draws and
    density both)."""

    def sample(self, y, mask, key, n):
        mu = self.base(y, mask)
        sd = marginal_std(self.base, y, mask).reshape(mu.shape)
        z = jax.random.normal(key, (mu.shape[0], n, *mu.shape[1:]), mu.dtype)
        return mu[:, None] + sd[:, None] * z

    def log_prob(self, x, y, mask):
        mu = self.base(y, mask)
        sd = marginal_std(self.base, y, mask).reshape(mu.shape)
        z = ((x - mu) / sd).reshape(x.shape[0], -1)
        return -0.5 * jnp.sum(z**2 + jnp.log(2 * jnp.pi), -1) - jnp.sum(jnp.log(sd).reshape(x.shape[0], -1), -1)

    def log_prob(self, x, y, mask):
        return self.base.log_prob(x, y, mask)


class ScaledJacobian(_Wrapper):
    """The same point estimates f(y) with Jacobian s ∂f/∂y: f + (s − 1)(f − stop_gradient(f))."""

    s: jax.Array

    def __call__(self, y, mask):
        f = self.base(y, mask)
        return f + (self.s - 1.0) * (f - jax.lax.stop_gradient(f))


class Broken(_Wrapper):
    """Breaks one output: ``what`` in {"estimate", "draws", "log_prob", "jacobian"} with
    ``value`` (nan or inf); the first event of a batch / the first draw of each run."""

    what: str = eqx.field(static=True)
    value: jax.Array

    def __call__(self, y, mask):
        f = self.base(y, mask)
        if self.what == "estimate":
            return f.at[0, 0].set(self.value)
        if self.what == "jacobian":
            s = jnp.sum(jnp.where(mask, y, 0.0))
            return f + jnp.sqrt(jnp.abs(s - jax.lax.stop_gradient(s)))  # value 0, derivative inf/nan
        return f

    def sample(self, y, mask, key, n):
        d = self.base.sample(y, mask, key, n)
        return d.at[:, 0, 0].set(self.value) if self.what == "draws" else d

    def log_prob(self, x, y, mask):
        lp = self.base.log_prob(x, y, mask)
        return jnp.full_like(lp, 1.0) * self.value if self.what == "log_prob" else lp


class NoDensity(_Wrapper):
    """The same posterior without ``log_prob`` (``has_density`` False)."""

    @property
    def has_density(self):
        return False

    def log_prob(self, x, y, mask):
        raise AssertionError("log_prob must not be called when has_density is False")


class WrongShape(_Wrapper):
    """Returns outputs of the wrong shape from ``what``."""

    what: str = eqx.field(static=True)

    def __call__(self, y, mask):
        f = self.base(y, mask)
        return f[:, :-1] if self.what == "estimate" else f

    def sample(self, y, mask, key, n):
        d = self.base.sample(y, mask, key, n)
        return d[:, :-1] if self.what == "draws" else d

    def log_prob(self, x, y, mask):
        lp = self.base.log_prob(x, y, mask)
        return lp[:, None] if self.what == "log_prob" else lp
