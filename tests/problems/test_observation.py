"""Observation operators: linearisations pass the dot-product test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import rel_err
from vardax_core.problems import LinearObservation, MaskedIdentity, Subsample, TanhObservation

RNG = np.random.default_rng(0)

OPERATORS = {
    "masked_identity_1d": MaskedIdentity(RNG.random(10) > 0.4),
    "masked_identity_2d": MaskedIdentity(RNG.random((6, 8)) > 0.5),
    "subsample_1d": Subsample((40,), 2, 1),
    "subsample_2d": Subsample((32, 32), (2, 4)),
    "linear": LinearObservation(matrix=jnp.asarray(RNG.normal(size=(7, 12))), state_shape=(12,)),
    "linear_2d_state": LinearObservation(matrix=jnp.asarray(RNG.normal(size=(5, 12))), state_shape=(3, 4)),
    "tanh": TanhObservation(inner=Subsample((40,), 2), scale=3.0),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_dot_product(name):
    """⟨H'(x) dx, dy⟩ = ⟨dx, H'(x)ᵀ dy⟩ to rounding."""
    op = OPERATORS[name]
    k = jax.random.split(jax.random.key(7), 3)
    x = 2.0 * jax.random.normal(k[0], op.state_shape)
    dx = jax.random.normal(k[1], op.state_shape)
    dy = jax.random.normal(k[2], op.obs_shape)
    lhs = jnp.vdot(op.jvp(x, dx), dy)
    rhs = jnp.vdot(dx, op.vjp(x, dy))
    assert abs(float(lhs - rhs)) <= 1e-12 * max(1.0, abs(float(lhs)))
    assert op(x).shape == op.obs_shape
    assert op.base_mask.shape == op.obs_shape


@pytest.mark.parametrize("name", sorted(n for n in OPERATORS if n != "tanh"))
def test_linear_operator_matrix(name):
    op = OPERATORS[name]
    assert op.is_linear
    x = jax.random.normal(jax.random.key(1), op.state_shape)
    H = op.as_matrix()
    assert rel_err(H @ x.reshape(-1), op(x).reshape(-1)) <= 1e-14
    assert rel_err(jax.jacfwd(lambda z: op(z).reshape(-1))(x).reshape(H.shape), H) <= 1e-14


def test_tanh_is_nonlinear_and_consistent():
    op = OPERATORS["tanh"]
    assert not op.is_linear
    x = 2.0 * jax.random.normal(jax.random.key(2), op.state_shape)
    dx = jax.random.normal(jax.random.key(3), op.state_shape)
    eps = 1e-6
    fd = (op(x + eps * dx) - op(x - eps * dx)) / (2 * eps)
    assert rel_err(op.jvp(x, dx), fd) <= 1e-8
    # saturates at ±scale
    assert float(jnp.max(jnp.abs(op(100.0 * x)))) <= 3.0


def test_subsample_shape_and_masked_identity_mask():
    assert Subsample((40,), 2).obs_shape == (20,)
    assert Subsample((40,), 3, 1).obs_shape == (13,)
    assert Subsample((32, 32), 2).obs_shape == (16, 16)
    m = np.array([True, False, True])
    assert np.array_equal(MaskedIdentity(m).base_mask, m)
    with pytest.raises(ValueError, match="observed"):
        MaskedIdentity(np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="matrix"):
        LinearObservation(matrix=jnp.ones((3, 5)), state_shape=(4,))
