"""Forward models: the dynamics M advancing a window's state by one model step."""

from __future__ import annotations

import abc
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


class AbstractForwardModel(eqx.Module):
    """One model step x_{k+1} = M(x_k) of length ``dt``; states have ``state_shape``."""

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]: ...

    dt: eqx.AbstractVar[float]

    @abc.abstractmethod
    def step(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """Advance one state by one model step."""

    def rollout(self, x0: Float[Array, "*state"], n_steps: int) -> Float[Array, "n_steps+1 *state"]:
        """States x_0 … x_{n_steps} (``lax.scan``; differentiable in both modes)."""

        def body(x, _):
            nxt = self.step(x)
            return nxt, nxt

        _, xs = jax.lax.scan(body, x0, None, length=n_steps)
        return jnp.concatenate([x0[None], xs], axis=0)


class AbstractLinearForwardModel(AbstractForwardModel):
    """A forward model whose step is the linear map x ↦ A x."""

    @abc.abstractmethod
    def as_matrix(self) -> Float[Array, "n n"]:
        """The step as a dense matrix over the flattened state."""


_rk4_tableau = diffrax.ButcherTableau(
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),
    c=np.array([0.5, 0.5, 1.0]),
)


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge–Kutta method as a diffrax solver.

    Used with fixed steps; ``scan_kind="bounded"`` keeps each step differentiable in
    forward mode (jvp, ``jax.linearize``) as well as reverse mode (vjp).
    """

    tableau: ClassVar[diffrax.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        del terms
        return 4


class AbstractODEForwardModel(AbstractForwardModel):
    """A model step that integrates dx/dt = f(x) over ``dt`` with diffrax's RK4.

    ``substeps`` RK4 steps of ``dt / substeps`` make one model step.
    """

    substeps: eqx.AbstractVar[int]

    @abc.abstractmethod
    def vector_field(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]: ...

    def step(self, x):
        solver = RK4(scan_kind="bounded")
        term = diffrax.ODETerm(lambda t, y, args: self.vector_field(y))
        h = self.dt / self.substeps

        def one(_, y):
            y1, _, _, _, _ = solver.step(term, 0.0, h, y, None, None, False)
            return y1

        return jax.lax.fori_loop(0, self.substeps, one, x)
