"""lorenz96, default configuration, 200 events: both solvers converge, agree on the
minimum they reach (and, with multi-start, on the global one), the analysis beats the
prior, and the Laplace posterior is calibrated (1σ coverage of the truth 68% ± 5%)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.oracle import IncrementalFourDVar, MultiStart, StrongFourDVar, laplace_posterior
from vardax_core.problems import get_problem

pytestmark = pytest.mark.slow
N_EVENTS = 200
N_STARTS = 8


@pytest.fixture(scope="module")
def solved():
    p = get_problem("lorenz96")
    x, y, mask = p.simulate(jax.random.key(96), N_EVENTS)
    # 64 lanes: the 200 events run through the conveyor (see AbstractFourDVar)
    solvers = {"strong": StrongFourDVar(lanes=64), "incremental": IncrementalFourDVar(lanes=64)}
    return p, x, y, mask, solvers, {k: s.solve(p, y, mask) for k, s in solvers.items()}


def test_both_solvers_converge_on_99_percent(solved):
    *_, results = solved
    for name, res in results.items():
        frac = float(np.mean(res.converged))
        print(f"{name}: {res.summary()}")
        assert frac >= 0.99, (name, res.summary())
        assert np.all(np.isfinite(res.x)) and np.all(np.asarray(res.grad_norm)[np.asarray(res.converged)] <= 1e-6)


def test_solvers_agree_and_multistart_settles_the_rest(solved):
    p, _, y, mask, solvers, results = solved
    s, i = results["strong"], results["incremental"]
    cost_s, cost_i = np.asarray(s.cost), np.asarray(i.cost)
    same = np.abs(cost_s - cost_i) <= 1e-9 * cost_s
    print(f"single start: same minimum on {same.mean():.1%} of events; others {np.flatnonzero(~same)}, "
          f"costs strong {cost_s[~same]}, incremental {cost_i[~same]}")
    assert same.mean() >= 0.97
    # where they reach the same minimum they agree to the tolerance (‖∇_v J‖ ≤ 1e-6)
    assert float(jnp.max(jnp.abs(s.x - i.x)[same])) <= 1e-5
    # the rest are distinct local minima of a non-convex window: from 8 starts each,
    # both solvers find the same (lowest) minimum. Padded to the main batch's shape
    # (25 events x 8 starts = 200 solves), so no new compilation.
    idx = np.flatnonzero(~same)
    if idx.size == 0:
        return
    assert idx.size <= N_EVENTS // N_STARTS
    padded = np.concatenate([idx, np.full(N_EVENTS // N_STARTS - idx.size, idx[0])])
    best = {k: np.asarray(MultiStart(sv, N_STARTS).solve(p, y[padded], mask[padded]).cost)[: idx.size]
            for k, sv in solvers.items()}
    print(f"multi-start ({N_STARTS}): strong {best['strong']}, incremental {best['incremental']}")
    np.testing.assert_allclose(best["strong"], best["incremental"], rtol=1e-9)
    assert np.all(best["strong"] <= np.minimum(cost_s, cost_i)[idx] * (1 + 1e-9))


def test_analysis_beats_the_prior_and_laplace_is_calibrated(solved):
    p, x, y, mask, _, results = solved
    post = laplace_posterior(p, results["strong"].x, y, mask)
    assert post.cov_kind == "dense"
    rmse = float(jnp.sqrt(jnp.mean((post.mean - x) ** 2)))
    prior_rmse = float(jnp.sqrt(jnp.mean((p.prior.mean - x) ** 2)))
    z = np.abs(np.asarray((x - post.mean) / post.std))
    cov1, cov2 = float(np.mean(z <= 1)), float(np.mean(z <= 2))
    print(f"mean RMSE vs truth {rmse:.3f} (prior {prior_rmse:.3f}), mean posterior std {float(jnp.mean(post.std)):.3f}, "
          f"coverage 1σ {cov1:.1%}, 2σ {cov2:.1%}")
    assert rmse < 0.6 * prior_rmse
    assert abs(cov1 - 0.6827) <= 0.05
    assert abs(cov2 - 0.9545) <= 0.03
