"""Accuracy on lorenz96 (default configuration), 10⁴ training pairs: on 200 held-out
events, each head's posterior-mean RMSE against the truth is within 10% of the 4DVar
oracle's (``StrongFourDVar``) on the same events — also with 20% of the observations
missing at random."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.oracle import StrongFourDVar

pytestmark = pytest.mark.slow
N_TEST = 200


@pytest.fixture(scope="module")
def oracle_events(pairs_store):
    cache = {}

    def get(missing):
        if missing not in cache:
            problem, _ = pairs_store("lorenz96", missing)
            x, y, mask = problem.simulate(jax.random.key(2024), N_TEST)
            result = StrongFourDVar().solve(problem, y, mask)
            rmse = float(jnp.sqrt(jnp.mean((result.x - x) ** 2)))
            cache[missing] = (x, y, mask, rmse)
        return cache[missing]

    return get


@pytest.mark.parametrize("missing", [0.0, 0.2])
@pytest.mark.parametrize("head", ["gaussian", "flow", "score"])
def test_posterior_mean_rmse_within_10_percent_of_the_oracle(trained, oracle_events, head, missing):
    x, y, mask, oracle_rmse = oracle_events(missing)
    problem, post, history = trained("lorenz96", head, missing)
    rmse = float(jnp.sqrt(jnp.mean((post(y, mask) - x) ** 2)))
    prior_rmse = float(jnp.sqrt(jnp.mean((problem.prior.mean - x) ** 2)))
    print(f"{head}, missing={missing}: RMSE {rmse:.4f} vs oracle {oracle_rmse:.4f} (ratio {rmse / oracle_rmse:.3f}); "
          f"prior {prior_rmse:.4f}; best epoch {history['best_epoch']}")
    assert rmse <= 1.10 * oracle_rmse
    assert np.all(np.isfinite(np.asarray(post(y, mask))))
