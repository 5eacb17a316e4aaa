"""Standardisation of states and observations with statistics of the training pairs."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float


class Standardizer(eqx.Module):
    """Affine maps (float64) between state units and the networks' units.

    States: x = x_mean + S u, where S is the lower Cholesky factor ``x_chol`` of the
    training states' covariance (whitening: u has identity covariance over the training
    pairs, which conditions the posterior precision the heads learn) or, when
    ``x_chol`` is None, diag(``x_std``). Observations: per slot, mean and standard
    deviation over the events where that slot is observed (a slot never observed keeps
    0 and 1); missing slots map to 0.
    """

    x_mean: Float[Array, " n"]
    x_std: Float[Array, " n"]
    x_chol: Float[Array, "n n"] | None
    y_mean: Float[Array, " n_obs"]
    y_std: Float[Array, " n_obs"]

    @classmethod
    def identity(cls, n_state: int, n_obs: int, whiten: bool) -> "Standardizer":
        chol = jnp.eye(n_state) if whiten else None
        return cls(jnp.zeros(n_state), jnp.ones(n_state), chol, jnp.zeros(n_obs), jnp.ones(n_obs))

    @property
    def whiten(self) -> bool:
        return self.x_chol is not None

    def x_to_std(self, x_flat):
        """Flat states (B, n) → network units (float64)."""
        d = x_flat - self.x_mean
        if self.x_chol is None:
            return d / self.x_std
        return jsl.solve_triangular(self.x_chol, d.T, lower=True).T

    def x_from_std(self, u):
        """Network units (..., n) → state units (float64)."""
        u = u.astype(self.x_mean.dtype)
        if self.x_chol is None:
            return self.x_mean + self.x_std * u
        return self.x_mean + u @ self.x_chol.T

    def scale_factor(self, F):
        """S F for a factor F (n, k) in network units (a covariance factor in state units)."""
        F = F.astype(self.x_mean.dtype)
        return self.x_std[:, None] * F if self.x_chol is None else self.x_chol @ F

    def log_det(self):
        """log |det S| (the density of x is that of u minus this)."""
        if self.x_chol is None:
            return jnp.sum(jnp.log(self.x_std))
        return jnp.sum(jnp.log(jnp.diag(self.x_chol)))

    def y_to_std(self, y_flat, mask_flat):
        """Flat observations (..., n_obs) → standardised, 0 at missing positions (float64).
        Missing entries (NaN by convention) never enter the arithmetic, so gradients and
        tangents with respect to y stay finite."""
        return jnp.where(mask_flat, (jnp.where(mask_flat, y_flat, 0.0) - self.y_mean) / self.y_std, 0.0)

    def to_dict(self) -> dict:
        names = ("x_mean", "x_std", "x_chol", "y_mean", "y_std")
        return {k: None if getattr(self, k) is None else np.asarray(getattr(self, k)).tolist() for k in names}


class StatsAccumulator:
    """Streaming sums for :class:`Standardizer` (float64, memory O(n² + n_obs) with
    whitening, O(n + n_obs) without)."""

    def __init__(self, n_state: int, n_obs: int, whiten: bool):
        self.n = 0
        self.whiten = whiten
        self.sx = np.zeros(n_state)
        self.sxx = np.zeros((n_state, n_state)) if whiten else np.zeros(n_state)
        self.cy = np.zeros(n_obs)
        self.sy = np.zeros(n_obs)
        self.syy = np.zeros(n_obs)

    def update(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        m = np.asarray(mask, bool).reshape(len(x), -1)
        y = np.where(m, np.asarray(y, np.float64).reshape(len(x), -1), 0.0)
        self.n += len(x)
        self.sx += x.sum(0)
        self.sxx += x.T @ x if self.whiten else (x * x).sum(0)
        self.cy += m.sum(0)
        self.sy += y.sum(0)
        self.syy += (y * y).sum(0)

    def result(self, min_std: float = 1e-6) -> Standardizer:
        if self.n < 2:
            raise ValueError("standardisation needs at least 2 training events")
        xm = self.sx / self.n
        if self.whiten:
            cov = self.sxx / self.n - np.outer(xm, xm)
            xs = np.sqrt(np.maximum(np.diag(cov), min_std**2))
            # Cholesky of the correlation, rescaled: robust to components of very different size
            corr = cov / np.outer(xs, xs)
            chol = jnp.asarray(xs[:, None] * np.linalg.cholesky(corr + 1e-9 * np.eye(len(xm))))
        else:
            xs = np.maximum(np.sqrt(np.maximum(self.sxx / self.n - xm**2, 0.0)), min_std)
            chol = None
        seen = self.cy >= 2
        cy = np.maximum(self.cy, 1)
        ym = np.where(seen, self.sy / cy, 0.0)
        ys = np.where(seen, np.sqrt(np.maximum(self.syy / cy - ym**2, 0.0)), 1.0)
        return Standardizer(jnp.asarray(xm), jnp.asarray(xs), chol, jnp.asarray(ym), jnp.asarray(np.maximum(ys, min_std)))
