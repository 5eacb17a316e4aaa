"""Accuracy on linear_gaussian (dimension 10) against the exact posterior.

- GaussianHead(full), trained on 10⁴ pairs with ring-shift augmentation (conftest.py):
  posterior-mean RMS error ≤ 0.05 σ_post and mean KL(exact ‖ q) ≤ 0.05 nats over 100
  held-out observations;
- the same with 20% of the observations missing at random;
- the C2ST has power (the sampling heads are in test_lg_*.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.problems import ExactLinearGaussianPosterior, get_problem

from .c2st import c2st

pytestmark = pytest.mark.slow
MISSING = [0.0, 0.2]
N_TEST, N_DRAWS = 100, 100


def held_out(problem, seed=123):
    x, y, mask = problem.simulate(jax.random.key(seed), N_TEST)
    return x, y, mask


def gaussian_kl(mean_p, cov_p, mean_q, cov_q):
    """KL(N(mean_p, cov_p) ‖ N(mean_q, cov_q)), batched."""
    n = mean_p.shape[-1]
    Lq = jnp.linalg.cholesky(cov_q)
    solve = jax.vmap(lambda L, b: jax.scipy.linalg.cho_solve((L, True), b))
    tr = jnp.trace(solve(Lq, cov_p), axis1=1, axis2=2)
    d = mean_q - mean_p
    maha = jnp.einsum("bi,bi->b", d, solve(Lq, d[..., None])[..., 0])
    logdet = jnp.linalg.slogdet(cov_q)[1] - jnp.linalg.slogdet(cov_p)[1]
    return 0.5 * (tr - n + maha + logdet)


@pytest.mark.parametrize("missing", MISSING)
def test_gaussian_full_head_matches_the_exact_posterior(trained, missing):
    problem, post, history = trained("linear_gaussian", "gaussian", missing)
    x, y, mask = held_out(problem)
    exact = ExactLinearGaussianPosterior(problem)
    p, q = exact.posterior(y, mask), post.posterior(y, mask)
    sd = p.std
    rms = float(jnp.sqrt(jnp.mean(((q.mean - p.mean) / sd) ** 2)))
    kl = gaussian_kl(p.mean, p.covariance(), q.mean, q.covariance())
    print(f"missing={missing}: mean RMS error {rms:.4f} σ_post, KL {float(kl.mean()):.4f} nats (max {float(kl.max()):.4f}), "
          f"best epoch {history['best_epoch']}")
    assert rms <= 0.05
    assert float(kl.mean()) <= 0.05
    # the point estimate is the Gaussian's mean, and the density is the Gaussian's
    np.testing.assert_allclose(post(y, mask), q.mean, rtol=0, atol=1e-12)
    from jax.scipy.stats import multivariate_normal

    lp = jax.vmap(multivariate_normal.logpdf)(x, q.mean, q.covariance())
    np.testing.assert_allclose(post.log_prob(x, y, mask), lp, atol=1e-3)


def test_c2st_has_power():
    """The test detects modest errors: exact draws widened by 15%, or shifted by 0.25 σ."""
    problem = get_problem("linear_gaussian")
    x, y, mask = held_out(problem, seed=5)
    exact = ExactLinearGaussianPosterior(problem)
    good = exact.sample(y, mask, jax.random.key(1), N_DRAWS)
    mean = exact(y, mask)[:, None]
    wide = mean + 1.15 * (good - mean)
    shifted = good + 0.25 * exact.posterior(y, mask).std[:, None]
    assert c2st(exact, good, y, mask, jax.random.key(2), 1.0) < 0.53
    assert c2st(exact, wide, y, mask, jax.random.key(2), 1.0) > 0.56
    assert c2st(exact, shifted, y, mask, jax.random.key(2), 1.0) > 0.56
