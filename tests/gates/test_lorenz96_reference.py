"""The adjoint and agreement gates on lorenz96 against the MCMC reference (the pipeline's
default settings): an independent MCMC run of the same events — the exact posterior,
with its own Monte-Carlo error — passes both; its Jacobian × 1.2 fails the adjoint gate.
The release-size version, with SBC and more wrong posteriors, is benchmarks/gate_power.py
(benchmarks/RESULTS.md)."""

import jax
import numpy as np
import pytest

from vardax_core.gates import GateConfig, agreement_from_estimates, compare_jacobians, jacobian_gate
from vardax_core.oracle import ReferenceConfig, StrongFourDVar, laplace_posterior, mcmc_reference
from vardax_core.problems import get_problem

pytestmark = pytest.mark.slow

N_EVENTS = 60


@pytest.fixture(scope="module")
def two_runs():
    problem = get_problem("lorenz96")
    _, y, mask = problem.simulate(jax.random.key(2026), N_EVENTS)
    lap = laplace_posterior(problem, StrongFourDVar().solve(problem, y, mask).x, y, mask, method="dense")
    cfg = ReferenceConfig()
    a = mcmc_reference(problem, y, mask, jax.random.key(1), config=cfg, laplace=lap)
    b = mcmc_reference(problem, y, mask, jax.random.key(2), config=cfg, laplace=lap)
    ok = np.asarray(a.mixed) & np.asarray(b.mixed)
    assert ok.mean() >= 0.9
    return a[np.flatnonzero(ok)], b[np.flatnonzero(ok)]


def test_an_independent_run_passes_and_a_scaled_jacobian_fails(two_runs):
    a, b = two_runs
    config = GateConfig()
    Ja, Va, Jb, Vb = (np.asarray(v) for v in (a.jacobian, a.jacobian_var, b.jacobian, b.jacobian_var))
    exact = jacobian_gate("adjoint_calibration", compare_jacobians(Jb, Ja, Vb, Va), config, "MCMCReference")
    print(exact.details["summary"])
    assert exact.passed
    assert np.median(exact.details["raw_ratio"]) > 0.05  # the noise the debiasing removes
    wrong = jacobian_gate("adjoint_calibration", compare_jacobians(1.2 * Jb, Ja, 1.44 * Vb, Va), config,
                          "MCMCReference")
    assert not wrong.passed and wrong.statistic == pytest.approx(0.2, abs=0.02)


def test_agreement_of_an_independent_run_with_the_reference(two_runs):
    a, b = two_runs
    flat = lambda v: np.asarray(v).reshape(v.shape[0], -1)  # noqa: E731
    r = agreement_from_estimates(flat(b.mean), flat(a.mean), flat(a.std), GateConfig())
    assert r.passed and r.statistic == 1.0
    assert r.details["max_z_quantiles"]["max"] < 0.5  # MC error of two runs: far inside 1 σ
