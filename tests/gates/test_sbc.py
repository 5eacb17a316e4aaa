"""Gate 3, simulation-based calibration: statistics, power and false rejections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tests.gates._wrong import Broken, NoDensity, WrongShape
from tests.gates.conftest import N_SEEDS, N_SEEDS_WRONG, SBC_CONFIG
from vardax_core.gates import (
    GateConfig,
    SBCSimulation,
    holm,
    rank_uniformity,
    sbc,
    sbc_gate,
    simulate_sbc,
    statistic_names,
)
from vardax_core.gates._sbc import _rank

NAMES = [f"x[{i}]" for i in range(10)] + ["obs_misfit", "log_q"]


def _numpy_holm(p):
    p = np.asarray(p)
    m = p.size
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adj[i] = running
    return adj


def test_statistics_match_numpy_and_scipy_on_the_same_ranks():
    rng = np.random.default_rng(0)
    N, L, B, S = 500, 99, 10, 12
    ranks = rng.integers(0, L + 1, size=(N, S))
    ranks[:, 3] = np.minimum(L, rng.binomial(L, rng.beta(0.7, 0.7, N)))  # a miscalibrated one
    u = (ranks + rng.random((N, S))) / (L + 1)
    out = {k: np.asarray(v) for k, v in rank_uniformity(jnp.asarray(ranks), jnp.asarray(u), L, B).items()}
    counts = np.stack([np.histogram(ranks[:, s], bins=B, range=(0, L + 1))[0] for s in range(S)])
    np.testing.assert_array_equal(out["counts"], counts)
    chi2, p = stats.chisquare(counts, axis=1)
    np.testing.assert_allclose(out["chi2"], chi2, rtol=1e-12)
    np.testing.assert_allclose(out["p"], p, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(out["holm"], _numpy_holm(p), rtol=1e-9, atol=1e-300)
    ks = [stats.kstest(u[:, s], "uniform") for s in range(S)]
    np.testing.assert_allclose(out["ks"], [k.statistic for k in ks], rtol=1e-12)

    sim = SBCSimulation(ranks, u, np.ones(N, bool), np.full(N, 0.5), np.zeros((N, 10)), np.zeros((N, 10)),
                        np.ones((N, 10)))
    r = sbc_gate(sim, GateConfig(sbc_runs=N, sbc_draws=L, sbc_bins=B), NAMES)
    np.testing.assert_allclose(r.details["ks_p"], [k.pvalue for k in ks], rtol=1e-9)
    np.testing.assert_allclose(r.details["holm_p"], _numpy_holm(p), rtol=1e-9, atol=1e-300)
    assert r.statistic == pytest.approx(min(_numpy_holm(p)), rel=1e-9)
    assert r.passed is False and r.details["worst_statistic"] == "x[3]" and "x[3]" in r.reason
    assert r.details["counts"] == counts.tolist()


def test_holm_matches_direct_loop_with_ties():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.04, 0.9])
    np.testing.assert_allclose(holm(jnp.asarray(p)), _numpy_holm(p), rtol=1e-15)


def test_ranks_break_ties_uniformly():
    L = 9
    truth = jnp.zeros(20000)
    draws = jnp.zeros((L, 20000))  # every draw ties with the truth
    ut, uj = jax.random.uniform(jax.random.key(0), (2, 20000))
    rank, u = _rank(draws, truth, ut, uj)
    counts = np.bincount(np.asarray(rank), minlength=L + 1)
    assert counts.size == L + 1 and stats.chisquare(counts).pvalue > 1e-3
    assert np.all((np.asarray(u) > 0) & (np.asarray(u) < 1))
    rank, _ = _rank(jnp.arange(L, dtype=float)[:, None], jnp.asarray([3.5]), jnp.asarray([0.7]), jnp.asarray([0.5]))
    assert int(rank[0]) == 4


def _gate_all(sims):
    return [sbc_gate(s, SBC_CONFIG, NAMES) for s in sims]


def test_exact_posterior_passes_with_at_most_5_percent_false_rejections(exact_sims):
    results = _gate_all(exact_sims)
    rate = np.mean([not r.passed for r in results])
    assert len(results) == N_SEEDS >= 20
    assert rate <= 0.05
    assert results[0].passed and results[0].details["statistics"] == NAMES
    # under the null the smallest raw p of 12 statistics is not systematically tiny
    assert np.median([min(r.details["p"]) for r in results]) > 0.01


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_scaled_covariance_fails_in_at_least_95_percent_of_seeds(scaled_sims, c):
    results = _gate_all(scaled_sims[c])
    rate = np.mean([not r.passed for r in results])
    assert len(results) == N_SEEDS_WRONG >= 40
    assert rate >= 0.95
    # the histogram has the predicted shape: U (c = 0.5) or hump (c = 2); with B = 10 the
    # outer bins hold 0.18 / 0.035 of the ranks for L → ∞ (see vardax_core.gates._sbc)
    counts = np.sum([np.asarray(r.details["counts"])[:10] for r in results], axis=(0, 1))
    outer = (counts[0] + counts[-1]) / 2 / counts.sum()
    assert (outer > 0.15) if c == 0.5 else (outer < 0.05)


@pytest.mark.parametrize("kind", ["shifted", "biased-sampler"])
def test_shifted_mean_or_biased_sampler_fails_in_at_least_95_percent_of_seeds(shifted_sims, kind):
    """A 0.3 σ shift of every component — of the whole posterior, or of the draws only
    (the estimate and density right) — is rejected: the component ranks lean to one side."""
    results = _gate_all(shifted_sims[kind])
    rate = np.mean([not r.passed for r in results])
    print(kind, "rejection rate", rate, "median min Holm p", np.median([r.statistic for r in results]))
    assert len(results) == N_SEEDS_WRONG >= 40
    assert rate >= 0.95
    counts = np.sum([np.asarray(r.details["counts"])[:10] for r in results], axis=(0, 1))
    # draws sit above the truth: the truth's ranks pile up in the low bins
    assert counts[:5].sum() > 1.2 * counts[5:].sum()


def test_diagonal_approximation_fails_in_at_least_95_percent_of_seeds(diagonal_sims):
    """N(μ, diag Σ) keeps every marginal right, so the component ranks stay uniform; the
    observation misfit of its draws does not match the truth's (the dropped correlations
    are the ones the observations impose), and the gate rejects it."""
    results = _gate_all(diagonal_sims)
    rate = np.mean([not r.passed for r in results])
    worst = [r.details["worst_statistic"] for r in results]
    print("diagonal rejection rate", rate, "worst statistics", {w: worst.count(w) for w in set(worst)})
    assert len(results) == N_SEEDS_WRONG >= 40
    assert rate >= 0.95
    assert all(w in ("obs_misfit", "log_q") for w, r in zip(worst, results) if not r.passed)
    # the marginals are right: over all seeds the component ranks are uniform
    holm_components = np.array([r.details["holm_p"][:10] for r in results])
    assert np.mean(holm_components.min(axis=1) <= SBC_CONFIG.sbc_alpha) <= 0.1


def test_diagnostics_see_miscalibration(exact_sims, scaled_sims, lg):
    from vardax_core.gates import sbc_diagnostics

    var = np.asarray(lg.prior.cov.variance())
    d = sbc_diagnostics(exact_sims[0], var, 19, density=True)
    a = d["levels"]
    assert np.max(np.abs(d["coverage"] - a)) < 0.03
    assert np.max(np.abs(d["hpd_coverage"] - a)) < 0.1 and np.max(np.abs(d["tarp_ecp"] - a)) < 0.1
    assert 0.9 < d["summary"]["z_rms"] < 1.1
    assert 0.5 < d["summary"]["contraction_mean"] < 1.0
    under = sbc_diagnostics(scaled_sims[0.5][0], var, 19, density=True)
    over = sbc_diagnostics(scaled_sims[2.0][0], var, 19, density=True)
    mid = len(a) // 2  # nominal 50 %
    assert under["coverage"][mid] < a[mid] - 0.1 < a[mid] + 0.1 < over["coverage"][mid]
    assert under["summary"]["z_rms"] > 1.3 and over["summary"]["z_rms"] < 0.8
    # TARP sees both through the joint distances: ECP bends by ~0.1 (0.02 for the exact one)
    for wrong in (under, over):
        assert wrong["summary"]["tarp_max_abs_error"] > d["summary"]["tarp_max_abs_error"]
        assert wrong["summary"]["hpd_coverage_max_abs_error"] > 0.3


SMALL = SBC_CONFIG.replace(sbc_runs=60, sbc_draws=19, sbc_bins=4)


@pytest.mark.timeout(600)  # vmapped blocks batch LAPACK kernels: fail, never hang
def test_one_at_a_time_and_vmapped_blocks_agree(exact, lg):
    post = NoDensity(exact)
    a = simulate_sbc(post, lg, jax.random.key(3), SMALL.replace(sbc_chunk=1))
    b = simulate_sbc(post, lg, jax.random.key(3), SMALL.replace(sbc_chunk=25))  # 3 blocks of 20
    np.testing.assert_array_equal(a.ranks, b.ranks)
    np.testing.assert_allclose(a.u, b.u, rtol=1e-12)
    assert a.ranks.shape == (60, 11)  # the components and the misfit; no log q without a density
    assert statistic_names(post, lg) == NAMES[:11]
    # run n simulates event n of problem.simulate(k_sim, N)
    k_sim = jax.random.split(jax.random.key(3), 4)[0]
    np.testing.assert_allclose(a.truth, np.asarray(lg.simulate(k_sim, 60)[0]), rtol=1e-12)


@pytest.mark.parametrize("what, value", [("draws", np.nan), ("log_prob", np.inf)])
def test_nonfinite_draws_or_densities_fail_with_a_reason(exact, lg, what, value):
    r = sbc(Broken(exact, what, jnp.asarray(value)), lg, jax.random.key(0), SMALL)
    assert r.passed is False and np.isnan(r.statistic)
    assert "non-finite posterior draws or log densities in 60 of 60 runs" in r.reason


@pytest.mark.parametrize("what, name", [("draws", r"posterior\.sample"), ("log_prob", r"posterior\.log_prob")])
def test_shape_mismatches_raise_naming_the_method(exact, lg, what, name):
    with pytest.raises(ValueError, match=name):
        sbc(WrongShape(exact, what), lg, jax.random.key(0), SMALL)


def test_gate_checks_names_against_statistics(exact_sims):
    with pytest.raises(ValueError, match="names"):
        sbc_gate(exact_sims[0], SBC_CONFIG, NAMES[:3])
