"""Lorenz (1963): a three-variable chaotic convection model."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._forward import AbstractODEForwardModel


class Lorenz63(AbstractODEForwardModel):
    """dx/dt = σ(y − x),  dy/dt = x(ρ − z) − y,  dz/dt = xy − βz.

    Defaults are the classical σ=10, ρ=28, β=8/3; one model step is ``dt`` = 0.01 time
    units integrated with one RK4 step.
    """

    sigma: float = eqx.field(static=True, default=10.0)
    rho: float = eqx.field(static=True, default=28.0)
    beta: float = eqx.field(static=True, default=8.0 / 3.0)
    dt: float = eqx.field(static=True, default=0.01)
    substeps: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.dt <= 0 or self.substeps < 1:
            raise ValueError(f"Lorenz63: need dt > 0 and substeps >= 1, got {self.dt}, {self.substeps}")

    @property
    def state_shape(self):
        return (3,)

    def vector_field(self, x):
        a, b, c = x[0], x[1], x[2]
        return jnp.stack(
            [self.sigma * (b - a), a * (self.rho - c) - b, a * b - self.beta * c]
        )
