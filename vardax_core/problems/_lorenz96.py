"""Lorenz (1996): N variables on a ring with advection, damping and forcing."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._forward import AbstractODEForwardModel


class Lorenz96(AbstractODEForwardModel):
    """dx_i/dt = (x_{i+1} − x_{i−2}) x_{i−1} − x_i + F on a ring of N variables.

    Defaults N=40, F=8 (chaotic, doubling time ≈ 0.42 time units); one model step is
    ``dt`` = 0.05 (≈ 6 hours of atmospheric time) integrated with one RK4 step.
    """

    n: int = eqx.field(static=True, default=40)
    forcing: float = eqx.field(static=True, default=8.0)
    dt: float = eqx.field(static=True, default=0.05)
    substeps: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.n < 4:
            raise ValueError(f"Lorenz96: `n` must be >= 4, got {self.n}")
        if self.dt <= 0 or self.substeps < 1:
            raise ValueError(f"Lorenz96: need dt > 0 and substeps >= 1, got {self.dt}, {self.substeps}")

    @property
    def state_shape(self):
        return (self.n,)

    def vector_field(self, x):
        return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + self.forcing
