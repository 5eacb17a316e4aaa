"""Gaussian prior: samples reproduce mean and covariance; log_prob is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from vardax_core.problems import GaussianPrior, get_problem


@pytest.mark.parametrize("name", ["lorenz96", "linear_gaussian", "lorenz63"])
def test_samples_reproduce_mean_and_covariance(name):
    """With N draws, each sample-mean entry has standard error sqrt(C_ii/N) and each
    sample-covariance entry sqrt((C_ii C_jj + C_ij²)/N) (Gaussian fourth moments). Every
    entry must lie within 5 standard errors: for ≤ 820 entries the chance of a false
    failure is < 1e-3 (and the key is fixed, so the test is deterministic)."""
    prior = get_problem(name).prior
    N = 40_000
    x = np.asarray(prior.sample(jax.random.key(0), (N,))).reshape(N, -1)
    mean = np.asarray(prior.mean).reshape(-1)
    C = np.asarray(prior.cov.as_matrix())
    d = np.diag(C)
    z_mean = (x.mean(0) - mean) / np.sqrt(d / N)
    assert np.max(np.abs(z_mean)) < 5.0
    S = np.cov(x, rowvar=False)
    se = np.sqrt((np.outer(d, d) + C**2) / N)
    assert np.max(np.abs(S - C) / se) < 5.0


def test_sample_shapes_2d():
    prior = get_problem("linear_gaussian_2d").prior
    assert prior.sample(jax.random.key(0), (3, 2)).shape == (3, 2, 32, 32)
    assert prior.sample(jax.random.key(0)).shape == (32, 32)


@pytest.mark.parametrize("name", ["lorenz96", "lorenz63"])
def test_log_prob_matches_scipy(name):
    prior = get_problem(name).prior
    x = prior.sample(jax.random.key(1), (5,))
    ref = scipy.stats.multivariate_normal(np.asarray(prior.mean), np.asarray(prior.cov.as_matrix())).logpdf(np.asarray(x))
    ours = np.asarray(jax.vmap(prior.log_prob)(x))
    np.testing.assert_allclose(ours, ref, rtol=1e-11)


def test_prior_shape_mismatch():
    cov = get_problem("lorenz63").prior.cov
    with pytest.raises(ValueError, match="mean"):
        GaussianPrior(jnp.zeros(4), cov)
    with pytest.raises(ValueError, match="`x`"):
        get_problem("lorenz63").prior.log_prob(jnp.zeros(4))
