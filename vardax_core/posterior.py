"""The posterior container every analysis returns (oracle, emulator-based, amortized)."""

from __future__ import annotations

import json
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import check_shape

CovKind = Literal["none", "dense", "diag", "lowrank"]


def _check_fields(mean, std, cov_factor, cov_diag, samples) -> None:
    if jnp.ndim(mean) < 2:
        raise ValueError(f"`mean` must be batched, shape (events, *state), got {jnp.shape(mean)}")
    B, state = mean.shape[0], tuple(mean.shape[1:])
    n = math.prod(state)
    if std is not None:
        check_shape("std", std, (B, *state), "same as mean")
    if cov_factor is not None:
        check_shape("cov_factor", cov_factor, (B, n, None), "(events, n_state, rank)")
    if cov_diag is not None:
        check_shape("cov_diag", cov_diag, (B, n), "(events, n_state)")
    if samples is not None:
        check_shape("samples", samples, (B, None, *state), "(events, draws, *state)")


class Posterior(eqx.Module):
    """Posteriors for a batch of B events over states of shape ``state_shape``.

    - ``mean``: (B, *state).
    - ``std``: (B, *state) marginal standard deviations, or None.
    - ``cov_factor``: (B, n, k) factor F of the covariance, or None.
    - ``cov_diag``: (B, n) diagonal part D, or None. The covariance is
      ``cov_kind == "dense"``: F Fᵀ (F lower-triangular Cholesky, k = n);
      ``"diag"``: diag(D); ``"lowrank"``: diag(D) + F Fᵀ; ``"none"``: unknown.
    - ``samples``: (B, S, *state) posterior draws, or None.
    - ``provenance``: JSON-serialisable description (method, model version, …).
    """

    mean: Float[Array, "B *state"]
    std: Float[Array, "B *state"] | None = None
    cov_factor: Float[Array, "B n k"] | None = None
    cov_diag: Float[Array, "B n"] | None = None
    samples: Float[Array, "B S *state"] | None = None
    provenance_json: str = eqx.field(static=True, default="{}")

    def __check_init__(self):
        _check_fields(self.mean, self.std, self.cov_factor, self.cov_diag, self.samples)

    @classmethod
    def create(cls, mean, *, std=None, cov_factor=None, cov_diag=None, samples=None, provenance=None):
        """Build a posterior; ``std`` is derived from the covariance when not given."""
        _check_fields(mean, std, cov_factor, cov_diag, samples)
        if std is None and (cov_factor is not None or cov_diag is not None):
            var = jnp.zeros(mean.shape[:1] + (int(jnp.size(mean[0])),), dtype=mean.dtype)
            if cov_factor is not None:
                var = var + jnp.sum(cov_factor**2, axis=-1)
            if cov_diag is not None:
                var = var + cov_diag
            std = jnp.sqrt(var).reshape(mean.shape)
        return cls(mean, std, cov_factor, cov_diag, samples, json.dumps(provenance or {}, sort_keys=True, default=str))

    @property
    def n_events(self) -> int:
        return int(self.mean.shape[0])

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape[1:])

    @property
    def provenance(self) -> dict:
        return json.loads(self.provenance_json)

    @property
    def cov_kind(self) -> CovKind:
        if self.cov_factor is not None:
            return "lowrank" if self.cov_diag is not None else "dense"
        return "diag" if self.cov_diag is not None else "none"

    def covariance(self) -> Float[Array, "B n n"]:
        """Dense covariances (small states only)."""
        kind = self.cov_kind
        if kind == "none":
            raise ValueError("this posterior carries no covariance (only mean/std/samples)")
        cov = 0.0
        if self.cov_factor is not None:
            cov = jnp.einsum("bik,bjk->bij", self.cov_factor, self.cov_factor)
        if self.cov_diag is not None:
            cov = cov + jax.vmap(jnp.diag)(self.cov_diag)
        return cov

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "B n *state"]:
        """Draws from the Gaussian described by mean and covariance (or by mean and std
        when only marginals are known — ``cov_kind == "none"`` with ``std``)."""
        B, state = self.n_events, self.state_shape
        flat_mean = self.mean.reshape(B, 1, -1)
        if self.cov_factor is not None:
            k1, key = jax.random.split(key)
            z = jax.random.normal(k1, (B, n, self.cov_factor.shape[-1]), dtype=self.mean.dtype)
            draws = flat_mean + jnp.einsum("bik,bsk->bsi", self.cov_factor, z)
            if self.cov_diag is not None:
                draws = draws + jnp.sqrt(self.cov_diag)[:, None] * jax.random.normal(key, draws.shape)
        elif self.cov_diag is not None or self.std is not None:
            sd = jnp.sqrt(self.cov_diag) if self.cov_diag is not None else self.std.reshape(B, -1)
            draws = flat_mean + sd[:, None] * jax.random.normal(key, (B, n, flat_mean.shape[-1]))
        else:
            raise ValueError("this posterior has neither a covariance nor a std to sample from")
        return draws.reshape(B, n, *state)

    def __getitem__(self, idx) -> "Posterior":
        """Select events (``idx`` is an int, slice or index array over the batch)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return jax.tree_util.tree_map(lambda a: a[idx], self)
