"""Observation operators H: state (``state_shape``) → observations (``obs_shape``).

Every operator has ``__call__`` and a linearisation (``jvp``, ``vjp``) consistent with
it, and a static ``base_mask`` of the positions it actually observes (all True except
for :class:`MaskedIdentity`). Linear operators also give ``as_matrix``.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float


class AbstractObservationOperator(eqx.Module):
    state_shape: eqx.AbstractVar[tuple[int, ...]]

    @property
    @abc.abstractmethod
    def obs_shape(self) -> tuple[int, ...]: ...

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*obs"]: ...

    @property
    def base_mask(self) -> Bool[np.ndarray, "*obs"]:
        """Positions this operator observes (a host-side constant)."""
        return np.ones(self.obs_shape, dtype=bool)

    @property
    def is_linear(self) -> bool:
        return False

    def jvp(self, x, dx):
        """(∂H/∂x at x) dx."""
        return jax.jvp(self, (x,), (dx,))[1]

    def vjp(self, x, dy):
        """(∂H/∂x at x)ᵀ dy."""
        return jax.vjp(self, x)[1](dy)[0]


class AbstractLinearObservationOperator(AbstractObservationOperator):
    @property
    def is_linear(self) -> bool:
        return True

    def jvp(self, x, dx):
        return self(dx)

    def as_matrix(self) -> Float[Array, "n_obs n_state"]:
        """H as a dense matrix between the flattened state and observations."""
        n = math.prod(self.state_shape)
        eye = jnp.eye(n).reshape(n, *self.state_shape)
        return jax.vmap(self)(eye).reshape(n, -1).T


class MaskedIdentity(AbstractLinearObservationOperator):
    """y = x at the positions where ``observed`` is True; other positions are masked."""

    state_shape: tuple[int, ...] = eqx.field(static=True)
    observed_flat: tuple[bool, ...] = eqx.field(static=True)

    def __init__(self, observed):
        observed = np.asarray(observed, dtype=bool)
        self.state_shape = tuple(observed.shape)
        self.observed_flat = tuple(bool(b) for b in observed.reshape(-1))

    def __check_init__(self):
        if not any(self.observed_flat):
            raise ValueError("MaskedIdentity: `observed` must mark at least one position")

    @property
    def obs_shape(self):
        return self.state_shape

    @property
    def base_mask(self):
        return np.array(self.observed_flat, dtype=bool).reshape(self.state_shape)

    def __call__(self, x):
        return x


class Subsample(AbstractLinearObservationOperator):
    """Regular subsampling in space: y = x[offset::stride] along every axis."""

    state_shape: tuple[int, ...] = eqx.field(static=True)
    stride: tuple[int, ...] = eqx.field(static=True)
    offset: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, state_shape, stride, offset=0):
        self.state_shape = tuple(int(s) for s in state_shape)
        d = len(self.state_shape)
        self.stride = tuple(int(s) for s in (stride if isinstance(stride, (tuple, list)) else (stride,) * d))
        self.offset = tuple(int(s) for s in (offset if isinstance(offset, (tuple, list)) else (offset,) * d))

    def __check_init__(self):
        d = len(self.state_shape)
        if len(self.stride) != d or len(self.offset) != d:
            raise ValueError(f"Subsample: `stride` and `offset` need {d} entries")
        if any(s < 1 for s in self.stride) or any(not 0 <= o < n for o, n in zip(self.offset, self.state_shape)):
            raise ValueError("Subsample: need stride >= 1 and 0 <= offset < size on every axis")

    @property
    def obs_shape(self):
        return tuple(len(range(o, n, s)) for n, s, o in zip(self.state_shape, self.stride, self.offset))

    def __call__(self, x):
        return x[tuple(slice(o, None, s) for s, o in zip(self.stride, self.offset))]


class LinearObservation(AbstractLinearObservationOperator):
    """A general linear operator y = H x over the flattened state; H is (n_obs, n_state)."""

    matrix: Float[Array, "n_obs n_state"]
    state_shape: tuple[int, ...] = eqx.field(static=True)

    def __check_init__(self):
        if self.matrix.ndim != 2 or self.matrix.shape[1] != math.prod(self.state_shape):
            raise ValueError(
                f"LinearObservation: `matrix` must have shape (n_obs, {math.prod(self.state_shape)}), "
                f"got {self.matrix.shape}"
            )

    @property
    def obs_shape(self):
        return (self.matrix.shape[0],)

    def __call__(self, x):
        return self.matrix @ x.reshape(-1)

    def as_matrix(self):
        return self.matrix


class TanhObservation(AbstractObservationOperator):
    """A saturating sensor: y = s · tanh(L(x) / s) for an inner linear operator L.

    Nonlinear but smooth and monotone; close to L(x) for |L(x)| ≪ s.
    """

    inner: AbstractLinearObservationOperator
    scale: float = eqx.field(static=True)
    state_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, inner: AbstractLinearObservationOperator, scale: float = 10.0):
        self.inner = inner
        self.scale = float(scale)
        self.state_shape = inner.state_shape

    def __check_init__(self):
        if self.scale <= 0:
            raise ValueError(f"TanhObservation: `scale` must be > 0, got {self.scale}")

    @property
    def obs_shape(self):
        return self.inner.obs_shape

    @property
    def base_mask(self):
        return self.inner.base_mask

    def __call__(self, x):
        return self.scale * jnp.tanh(self.inner(x) / self.scale)
