"""Skill scores (RMSE, energy score, CRPS) beside the gates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from tests.gates._wrong import ScaledCovariance, ShiftedPosterior
from tests.gates.conftest import oracle_dataset
from vardax_core.gates import crps, energy_score, read_oracle, skill_scores


def _gaussian_crps(mu, sigma, x):
    z = (x - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_crps_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=(20, 3)), rng.uniform(0.5, 2.0, size=(20, 3))
    x = rng.normal(size=(20, 3))
    K = 2000
    draws = mu[:, None] + sigma[:, None] * rng.normal(size=(20, K, 3))
    exact = _gaussian_crps(mu, sigma, x).mean(axis=1)
    got = crps(draws, x)
    # the estimator is unbiased; its sd at K=2000 is < 1 % of the score here
    np.testing.assert_allclose(got, exact, rtol=0.05)


def test_energy_score_is_the_crps_in_one_dimension_and_checks_draws():
    rng = np.random.default_rng(1)
    draws, x = rng.normal(size=(5, 50, 1)), rng.normal(size=(5, 1))
    np.testing.assert_allclose(energy_score(draws, x), crps(draws, x), rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2 draws"):
        energy_score(draws[:, :1], x)


@pytest.fixture(scope="module")
def lg_data(lg):
    return read_oracle(oracle_dataset(lg, jax.random.key(7), 300), lg)


def test_the_exact_posterior_scores_best(exact, lg, lg_data):
    """On 300 linear-Gaussian events the exact posterior's RMSE is the oracle mean's, and
    a shifted mean or a mis-scaled covariance has a worse (higher) energy score."""
    sel = np.arange(300)
    key = jax.random.key(3)
    ex = skill_scores(exact, lg_data, sel, key, n_draws=32)
    assert ex["rmse"] == pytest.approx(ex["rmse_map"], rel=1e-9)
    assert "rmse_reference" not in ex and ex["n_events"] == 300
    for wrong in (ShiftedPosterior(exact, jnp.asarray(0.5)), ScaledCovariance(exact, jnp.asarray(2.0)),
                  ScaledCovariance(exact, jnp.asarray(0.3))):
        w = skill_scores(wrong, lg_data, sel, key, n_draws=32)
        assert w["energy_score"] > ex["energy_score"], (type(wrong).__name__, w, ex)
