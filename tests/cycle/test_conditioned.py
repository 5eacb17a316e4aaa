"""Background-conditioned analysis in the cycle, on the linear twin
(``linear_gaussian_cycling``) where every posterior is known exactly: the oracle step
is the windowed closed form, and a head conditioned on (x_b, y) passes the three gates
and runs in the loop like the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.cycle import BackgroundConditionedStep, OracleAnalyser, TwinSetup, run_cycle
from vardax_core.problems import get_problem, linear_gaussian_posterior

K = 30


@pytest.fixture(scope="module")
def twin():
    p = get_problem("linear_gaussian_cycling")
    setup = TwinSetup(p.forward, p.obs_op, GaussianNoiseRow(p), steps_per_cycle=p.obs_steps[1], n_cycles=K, burn_in=5)
    truth, y, mask = setup.simulate(p.prior.sample(jax.random.key(1)), jax.random.key(2))
    return p, setup, truth, y, mask


def GaussianNoiseRow(p):
    from vardax_core.problems import GaussianNoise

    return GaussianNoise(p.noise.std[1])  # the observations' error, row 1 of the problem's noise


def test_oracle_step_is_the_windowed_closed_form(twin):
    p, setup, truth, y, mask = twin
    bg = truth[0] + 0.5 * jax.random.normal(jax.random.key(3), truth[0].shape)
    res = run_cycle(setup, BackgroundConditionedStep(p, OracleAnalyser()), truth, y, mask, bg, jax.random.key(4))
    Ms = np.linalg.matrix_power(np.asarray(p.forward.as_matrix()), setup.steps_per_cycle)
    start = np.asarray(bg)
    for k in range(K):
        ys = jnp.stack([jnp.asarray(start), y[k]])
        x0, P = linear_gaussian_posterior(p, ys, jnp.ones_like(ys, dtype=bool))
        now, var = Ms @ np.asarray(x0), np.diag(Ms @ np.asarray(P) @ Ms.T)
        np.testing.assert_allclose(res.analysis[k], now, rtol=0, atol=1e-7)
        np.testing.assert_allclose(res.spread_a[k], np.sqrt(var.mean()), rtol=0, atol=1e-8)
        start = now


def test_step_refuses_a_problem_without_a_background_row():
    with pytest.raises(ValueError, match="two observation rows"):
        BackgroundConditionedStep(get_problem("linear_gaussian"), OracleAnalyser())


def test_step_refuses_a_twin_of_another_cycle_length(twin):
    p, setup, truth, y, mask = twin
    other = TwinSetup(p.forward, p.obs_op, setup.noise, steps_per_cycle=1, n_cycles=K)
    with pytest.raises(ValueError, match="does not match the twin's cycle"):
        run_cycle(other, BackgroundConditionedStep(p, OracleAnalyser()), truth, y, mask, truth[0], jax.random.key(0))


@pytest.fixture(scope="module")
def head(twin):
    """A full-covariance Gaussian head on the identity encoder's features, linear (depth
    0, the moment form: mean linear in (x_b, y) through the skip path, constant Cholesky
    factor) — the exact posterior given (x_b, y) is representable — trained on 10^6 fresh
    pairs. The settings were chosen on other gate events than the test's (keys apart)."""
    from vardax_core.amortized import build_posterior, fit_simulated

    p = twin[0]
    model = build_posterior(p, {"encoder": {"type": "identity"}, "head": {
        "type": "gaussian", "covariance": "full", "depth": 0, "skip": True, "obs_precision": False}},
        jax.random.key(0))
    model, _ = fit_simulated(model, p, budget={"n_pairs": 1_000_000, "epoch_pairs": 250_000},
                             config={"batch_size": 512, "learning_rate": 0.03, "patience": 10,
                                     "final_lr_fraction": 0.001}, seed=0, progress=False)
    return model


@pytest.mark.slow
def test_background_conditioned_head_passes_the_three_gates(twin, head):
    """Gated against the exact posterior of held-out events (seeds apart from training)."""
    from tests.gates.conftest import oracle_dataset
    from vardax_core.gates import GateConfig, run_gates

    p = twin[0]
    report, _ = run_gates(head, p, oracle_dataset(p, jax.random.key(90210), 200), GateConfig(fast_compile=True),
                          jax.random.key(90211))
    assert report.passed, [(g.name, g.passed, g.statistic) for g in report.results]


@pytest.mark.slow
def test_head_in_the_loop_matches_the_oracle_in_the_same_loop(twin, head):
    p, setup, truth, y, mask = twin
    bg = truth[0] + 0.5 * jax.random.normal(jax.random.key(3), truth[0].shape)
    oracle = run_cycle(setup, BackgroundConditionedStep(p, OracleAnalyser()), truth, y, mask, bg, jax.random.key(4))
    amortized = run_cycle(setup, head.as_analysis_step(), truth, y, mask, bg, jax.random.key(4))
    np.testing.assert_allclose(amortized.analysis, oracle.analysis, rtol=0, atol=0.05)
    s_o, s_h = oracle.summary(setup.burn_in), amortized.summary(setup.burn_in)
    assert abs(s_h["rmse_a"] / s_o["rmse_a"] - 1) < 0.05
    assert abs(s_h["spread_a"] / s_o["spread_a"] - 1) < 0.05
