"""The emulator gates: the trained emulator passes both, degraded ones fail the Jacobian
gate (and are not promotable), the forward gate has power, bad input is an error."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.emulator import (
    EMULATOR_GATE_NAMES,
    EmulatorGateConfig,
    build_emulator,
    emulator_gates,
    emulator_gates_passed,
    forward_agreement,
    heldout_states,
    jacobian_calibration,
    simulate_transitions,
)
from vardax_core.emulator._train import TRAIN_TAG
from vardax_core.gates import GateResult
from vardax_core.problems import get_problem

GATE_KEY = jax.random.key(11)


@pytest.fixture(scope="module")
def states(l96):
    return heldout_states(l96, jax.random.key(0), 200)


# ---- the forward gate's mechanics (no training) ---------------------------------------------------

def test_forward_gate_has_power(l96, states):
    step = l96.forward.step
    exact = forward_agreement(step, l96.forward, states)
    assert exact.passed and exact.name == "emulator_forward" and exact.statistic == 0.0
    # every output 2 % too large: the relative error is 0.02 in every state, twice the threshold
    scaled = forward_agreement(lambda x: 1.02 * step(x), step, states)
    assert not scaled.passed and scaled.statistic == pytest.approx(0.02, rel=1e-12)
    assert "0.02" in scaled.reason and scaled.details["fraction_below_threshold"] == 0.0
    # the 95 % rule: a tail of 4 % badly emulated states passes, 6 % fails
    n, first = len(states), np.sort(states[:, 0])
    for frac, passes in ((0.04, True), (0.06, False)):
        thr = first[n - int(frac * n) - 1]  # exactly frac · n states have x[0] > thr
        r = forward_agreement(lambda x: step(x) * jnp.where(x[0] > thr, 1.5, 1.0), step, states)
        assert r.passed is passes and r.details["fraction_below_threshold"] == 1 - frac


def test_forward_gate_fails_on_non_finite_output(l96, states):
    r = forward_agreement(lambda x: x.at[0].set(jnp.nan), l96.forward, states)
    assert not r.passed and np.isnan(r.statistic) and "non-finite" in r.reason
    with pytest.raises(ValueError, match="`states` must be batched"):
        forward_agreement(l96.forward, l96.forward, states[0])


def test_heldout_states_are_fresh_and_cover_the_window(l96, states):
    assert states.shape == (200, 40) and np.all(np.isfinite(states))
    again = heldout_states(l96, jax.random.key(0), 20)
    assert np.array_equal(again, states[:20])  # the first n do not depend on how many are drawn
    train = simulate_transitions(l96, jax.random.fold_in(jax.random.key(0), TRAIN_TAG), 200)["x"]
    assert not np.isin(states, train).any()  # the training seed's key gives other states
    # state i is at window step i mod 10: states of later steps have left the background further
    d = np.linalg.norm(states - np.asarray(l96.prior.mean), axis=1).reshape(20, 10)
    assert d[:, -1].mean() > d[:, 0].mean()
    with pytest.raises(ValueError, match="`n`"):
        heldout_states(l96, jax.random.key(0), 0)


def test_gate_config_validates_and_round_trips():
    cfg = EmulatorGateConfig(forward_threshold=0.02, jacobian_states=50)
    assert EmulatorGateConfig.from_dict(cfg.to_dict()) == cfg
    g = cfg.gate_config()
    assert g.adjoint_threshold == 0.05 and g.adjoint_events == 50 and g.adjoint_quantile == 0.95
    for bad, match in (({"forward_threshold": 0}, "forward_threshold"), ({"jacobian_threshold": -1}, "adjoint_threshold"),
                       ({"forward_states": 0}, "forward_states"), ({"n_probes": 0}, "n_probes"),
                       ({"thresold": 1}, "unknown field")):
        with pytest.raises(ValueError, match=match):
            EmulatorGateConfig.from_dict(bad)


# ---- the trained emulator -----------------------------------------------------------------------

@pytest.mark.slow
def test_trained_emulator_passes_both_gates(l96, trained):
    emulator, history = trained
    results = emulator_gates(emulator, l96, GATE_KEY)
    assert set(results) == set(EMULATOR_GATE_NAMES)
    fwd, jac = results["emulator_forward"], results["emulator_jacobian"]
    assert fwd.passed, fwd.details
    assert jac.passed, jac.details
    assert fwd.details["n_states"] == 2000 and jac.details["n_states"] == 200
    assert fwd.statistic < 0.01 and fwd.details["mean"] <= fwd.statistic
    assert jac.statistic < 0.05 and jac.threshold == 0.05
    assert emulator_gates_passed(results)
    for r in results.values():  # JSON-ready for MLflow and Prefect artifacts
        assert GateResult.from_json(r.to_json()).passed == r.passed


def _perturbed(emulator, rel: float, seed: int):
    """Every convolution weight multiplied by (1 + rel · ξ), ξ ~ N(0, 1)."""
    convs = (emulator.first, emulator.blocks, emulator.out, emulator.skip)
    leaves, treedef = jax.tree.flatten(convs)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [a * (1 + rel * jax.random.normal(k, a.shape, a.dtype)) for a, k in zip(leaves, keys)]
    return eqx.tree_at(lambda m: (m.first, m.blocks, m.out, m.skip), emulator, jax.tree.unflatten(treedef, noisy),
                       is_leaf=lambda x: x is None)


@pytest.mark.slow
def test_degraded_emulators_fail_the_jacobian_gate(l96, trained):
    """Perturbed weights (10 %) and an untrained network with the trained statistics both fail
    the Jacobian gate, so neither would be promoted."""
    emulator, _ = trained
    states = heldout_states(l96, GATE_KEY, 200)
    untrained = build_emulator(l96, None, jax.random.key(0)).with_statistics(**emulator.statistics())
    for degraded in (_perturbed(emulator, 0.1, 0), untrained):
        jac = jacobian_calibration(degraded, l96, states, GATE_KEY)
        assert not jac.passed and jac.statistic > 0.05, jac.details["summary"]
        assert "reason" in jac.details
        results = {"emulator_forward": dataclasses.replace(jac, name="emulator_forward", passed=True), "emulator_jacobian": jac}
        assert not emulator_gates_passed(results)
    assert not emulator_gates_passed({"emulator_jacobian": jacobian_calibration(emulator, l96, states, GATE_KEY)})


def test_bad_gate_input_is_an_error(l96):
    other = build_emulator(get_problem("lorenz96", forcing=10.0), {"channels": 4, "depth": 1}, jax.random.key(0))
    with pytest.raises(ValueError, match="problem hash"):
        emulator_gates(other, l96, GATE_KEY)
