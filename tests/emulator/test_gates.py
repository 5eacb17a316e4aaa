"""The emulator gates' mechanics: the forward gate has power, bad input is an error (the
trained emulator passing both and degraded ones failing are in test_trained.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vardax_core.emulator import (
    EmulatorGateConfig,
    build_emulator,
    emulator_gates,
    forward_agreement,
    heldout_states,
    simulate_transitions,
)
from vardax_core.emulator._train import TRAIN_TAG
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


def test_bad_gate_input_is_an_error(l96):
    other = build_emulator(get_problem("lorenz96", forcing=10.0), {"channels": 4, "depth": 1}, jax.random.key(0))
    with pytest.raises(ValueError, match="problem hash"):
        emulator_gates(other, l96, GATE_KEY)
