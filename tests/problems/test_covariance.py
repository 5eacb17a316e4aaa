"""Covariance operators: B, B⁻¹, B^½ consistent with the dense matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import rel_err
from vardax_core.problems import CirculantCovariance, DenseCovariance, DiagonalCovariance

RNG = np.random.default_rng(0)
_A = RNG.normal(size=(6, 6))

COVARIANCES = {
    "diagonal": DiagonalCovariance(jnp.asarray(0.5 + RNG.random(7))),
    "circulant_1d": CirculantCovariance.from_length_scale((40,), 1.3, 2.0),
    "circulant_2d": CirculantCovariance.from_length_scale((8, 12), 0.7, 1.5),
    "dense": DenseCovariance.from_matrix(_A @ _A.T + 6 * np.eye(6)),
}


@pytest.mark.parametrize("name", sorted(COVARIANCES))
def test_operator_consistency(name):
    C = COVARIANCES[name]
    dense = np.asarray(C.as_matrix())
    n = C.size
    np.testing.assert_allclose(dense, dense.T, atol=1e-13)
    assert np.all(np.linalg.eigvalsh(dense) > 0)
    v = jax.random.normal(jax.random.key(0), C.state_shape)
    assert rel_err(C.solve(C.mv(v)), v) <= 1e-12
    assert rel_err(C.mv(v).reshape(-1), dense @ np.asarray(v).reshape(-1)) <= 1e-13
    # S Sᵀ = C, with S and Sᵀ adjoint to each other
    S = np.stack([np.asarray(C.sqrt_mv(e.reshape(C.state_shape))).reshape(-1) for e in np.eye(n)], axis=1)
    assert rel_err(S @ S.T, dense) <= 1e-12
    w = jax.random.normal(jax.random.key(1), C.state_shape)
    assert abs(float(jnp.vdot(C.sqrt_mv(v), w) - jnp.vdot(v, C.sqrt_rmv(w)))) <= 1e-12
    np.testing.assert_allclose(np.asarray(C.variance()).reshape(-1), np.diag(dense), rtol=1e-12)
    np.testing.assert_allclose(float(C.logdet()), np.linalg.slogdet(dense)[1], rtol=1e-12)


def test_circulant_marginal_std_and_correlation_decay():
    C = CirculantCovariance.from_length_scale((40,), 2.0, 3.0)
    row = np.asarray(C.as_matrix())[0]
    np.testing.assert_allclose(row[0], 4.0, rtol=1e-12)
    assert row[1] > row[3] > row[6] and abs(row[20]) < 0.1 * row[0]


def test_invalid_covariances():
    with pytest.raises(ValueError, match="std"):
        DiagonalCovariance(jnp.asarray([1.0, 0.0]))
    with pytest.raises(ValueError, match="positive definite"):
        DenseCovariance.from_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        DenseCovariance.from_matrix(np.array([[1.0, 0.5], [0.0, 1.0]]))
