"""Gate 1, posterior agreement: the exact posterior passes, a mean off by 1 σ fails."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.gates._wrong import Broken, RandomShift, UniformShift, WrongShape
from tests.gates.conftest import FAST, oracle_arrays
from vardax_core.gates import GateConfig, agreement_from_estimates, posterior_agreement
from vardax_core.gates._common import point_estimates

N_EVENTS = 200
N_SEEDS = 20


@pytest.fixture(scope="module")
def studies(lg):
    """N_SEEDS independent held-out sets of N_EVENTS events, simulated in one batch."""
    x, y, mask, mean, std = oracle_arrays(lg, jax.random.key(11), N_SEEDS * N_EVENTS)
    return y, mask, np.asarray(mean), np.asarray(std)


def _rejections(posterior, lg, studies, config=FAST):
    y, mask, mean, std = studies
    est = point_estimates(posterior, y, mask, lg.state_shape, fast_compile=True)  # all seeds' events, one call
    results = [agreement_from_estimates(est[s], mean[s], std[s], config)
               for s in np.split(np.arange(N_SEEDS * N_EVENTS), N_SEEDS)]
    return results, np.mean([not r.passed for r in results])


def test_exact_posterior_passes_in_every_seed(exact, lg, studies):
    results, rate = _rejections(exact, lg, studies)
    assert rate == 0.0
    r = results[0]
    assert r.statistic == 1.0 and r.threshold == 0.95 and r.details["n_events"] == N_EVENTS
    assert max(r.details["max_z"]) < 1e-8
    assert len(r.details["rms_z"]) == N_EVENTS


def test_mean_off_by_one_sigma_fails_in_every_seed(exact, lg, studies):
    wrong = RandomShift(exact, jax.random.key(3))
    results, rate = _rejections(wrong, lg, studies)
    assert rate >= 0.95
    assert rate == 1.0
    fractions = [r.statistic for r in results]
    # P(max_i |ξ_i| <= 1) = 0.6827^10 = 0.022: about 2 % of events agree.
    assert 0.0 <= np.mean(fractions) < 0.06
    assert "agree" in results[0].reason
    # the RMS-z of a 1 σ RMS error is ≈ 1
    assert 0.8 < np.median(results[0].details["rms_z"]) < 1.2


@pytest.mark.parametrize("k, passes", [(0.99, True), (1.01, False)])
def test_tolerance_is_inclusive_at_one_sigma(exact, lg, studies, k, passes):
    y, mask, mean, std = (a[:N_EVENTS] for a in studies)
    r = posterior_agreement(UniformShift(exact, jnp.asarray(k)), y, mask, mean, std, FAST)
    assert r.passed is passes
    assert np.allclose(r.details["max_z"], k, rtol=1e-6)


def test_min_fraction_rule_counts_events(lg):
    mean = np.zeros((100, 10))
    std = np.ones((100, 10))
    est = mean.copy()
    est[:5, 3] = 1.5  # 5 % of events disagree: fraction 0.95 passes (>=)
    assert agreement_from_estimates(est, mean, std).passed
    est[5, 0] = -2.0
    r = agreement_from_estimates(est, mean, std)
    assert not r.passed and r.statistic == pytest.approx(0.94) and r.details["n_agree"] == 94
    assert r.details["worst_event"] == 5
    assert agreement_from_estimates(est, mean, std, GateConfig(tolerance_sigma=2.5)).passed


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_estimates_fail_with_a_reason(exact, lg, studies, value):
    y, mask, mean, std = (a[:50] for a in studies)
    r = posterior_agreement(Broken(exact, "estimate", jnp.asarray(value)), y, mask, mean, std, FAST)
    assert r.passed is False and "non-finite point estimates in 50 of 50 events" in r.reason
    # one bad event among many that agree still fails the gate
    est = mean.copy()
    est[7, 2] = value
    r = agreement_from_estimates(est, mean, std)
    assert r.passed is False and "1 of 50 events (first: 7)" in r.reason


def test_shape_mismatches_raise_naming_the_variable(exact, lg, studies):
    y, mask, mean, std = (a[:20] for a in studies)
    with pytest.raises(ValueError, match=r"posterior\(y, mask\)"):
        posterior_agreement(WrongShape(exact, "estimate"), y, mask, mean, std)
    with pytest.raises(ValueError, match="oracle_std"):
        posterior_agreement(exact, y, mask, mean, std[:, :5])
    with pytest.raises(ValueError, match="oracle_mean"):
        agreement_from_estimates(mean, mean[:10], std)
    with pytest.raises(ValueError, match="same number of events"):
        posterior_agreement(exact, y[:10], mask[:10], mean, std)
    with pytest.raises(ValueError, match="`y`"):
        posterior_agreement(exact, y[:, :, :3], mask, mean, std)


def test_invalid_oracle_values_raise(lg):
    mean, std = np.zeros((4, 10)), np.ones((4, 10))
    bad = std.copy()
    bad[1, 1] = 0.0
    with pytest.raises(ValueError, match="oracle_std"):
        agreement_from_estimates(mean, mean, bad)
    m = mean.copy()
    m[0, 0] = np.nan
    with pytest.raises(ValueError, match="oracle_mean"):
        agreement_from_estimates(mean, m, std)
