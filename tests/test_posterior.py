"""The Posterior container."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core import Posterior


def _chol_batch(B, n, seed=0):
    A = np.random.default_rng(seed).normal(size=(B, n, n))
    C = A @ A.transpose(0, 2, 1) + n * np.eye(n)
    return jnp.asarray(np.linalg.cholesky(C)), C


def test_dense_posterior_covariance_std_and_sampling():
    L, C = _chol_batch(3, 4)
    mean = jnp.arange(12.0).reshape(3, 4)
    post = Posterior.create(mean, cov_factor=L, provenance={"method": "test"})
    assert post.cov_kind == "dense" and post.n_events == 3 and post.state_shape == (4,)
    np.testing.assert_allclose(post.covariance(), C, rtol=1e-12)
    np.testing.assert_allclose(post.std, np.sqrt(np.diagonal(C, axis1=1, axis2=2)), rtol=1e-12)
    draws = post.sample(jax.random.key(0), 40_000)
    assert draws.shape == (3, 40_000, 4)
    emp = np.cov(np.asarray(draws[1]), rowvar=False)
    se = np.sqrt((np.outer(np.diag(C[1]), np.diag(C[1])) + C[1] ** 2) / 40_000)
    assert np.max(np.abs(emp - C[1]) / se) < 5
    assert post.provenance == {"method": "test"}


def test_lowrank_and_diag_posteriors():
    B, n, k = 2, 5, 2
    F = jnp.asarray(np.random.default_rng(1).normal(size=(B, n, k)))
    D = jnp.full((B, n), 0.3)
    post = Posterior.create(jnp.zeros((B, n)), cov_factor=F, cov_diag=D)
    assert post.cov_kind == "lowrank"
    np.testing.assert_allclose(post.covariance()[0], F[0] @ F[0].T + 0.3 * np.eye(n), rtol=1e-12)
    diag = Posterior.create(jnp.zeros((B, n)), cov_diag=D)
    assert diag.cov_kind == "diag"
    np.testing.assert_allclose(diag.std, np.sqrt(0.3), rtol=1e-12)
    assert diag.sample(jax.random.key(0), 7).shape == (B, 7, n)


def test_image_shaped_posterior_and_indexing():
    mean = jnp.zeros((4, 8, 8))
    post = Posterior.create(mean, std=jnp.ones((4, 8, 8)), samples=jnp.zeros((4, 3, 8, 8)))
    assert post.cov_kind == "none" and post.state_shape == (8, 8)
    assert post.sample(jax.random.key(0), 2).shape == (4, 2, 8, 8)
    sub = post[1:3]
    assert sub.n_events == 2 and sub.samples.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="no covariance"):
        post.covariance()


def test_shape_errors_name_the_field():
    with pytest.raises(ValueError, match="`std`"):
        Posterior.create(jnp.zeros((2, 3)), std=jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="`cov_factor`"):
        Posterior.create(jnp.zeros((2, 3)), cov_factor=jnp.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="`samples`"):
        Posterior.create(jnp.zeros((2, 3)), samples=jnp.ones((3, 5, 3)))
    with pytest.raises(ValueError, match="`mean` must be batched"):
        Posterior.create(jnp.zeros(3))
