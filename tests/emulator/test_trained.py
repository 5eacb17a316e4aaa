"""The default lorenz96 emulator, trained once (the session fixture ``trained``, one file so
that one pytest-xdist worker trains it): it passes both emulator gates, degraded copies
fail the Jacobian gate, and its 4DVar agrees with the physics oracle on 200 events."""

import dataclasses

import equinox as eqx
import jax
import numpy as np
import pytest

from tests.emulator.conftest import N_EVENTS, N_UNCONVERGED, oracle_dataset
from vardax_core.emulator import (
    EMULATOR_GATE_NAMES,
    build_emulator,
    emulator_agreement_from_oracle,
    emulator_gates,
    emulator_gates_passed,
    heldout_states,
    jacobian_calibration,
)
from vardax_core.gates import GateResult
from vardax_core.oracle import OracleAnalysis

GATE_KEY = jax.random.key(11)


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


# ---- step 4: its 4DVar against the physics oracle -----------------------------------------------

@pytest.mark.slow
def test_emulator_4dvar_agrees_with_the_physics_oracle(l96, trained, solver, heldout):
    """The same solver object on the physics problem (the oracle, in the fixture) and on the
    emulated problem: ≥ 95 % of 200 held-out events within 1σ of the oracle posterior."""
    emulator, _ = trained
    analysis = OracleAnalysis(solver)
    assert analysis.solver is solver
    gate, post, result = emulator_agreement_from_oracle(emulator, l96, oracle_dataset(l96, heldout),
                                                        analysis=analysis)
    assert gate.name == "emulator_agreement" and gate.threshold == 0.95
    assert gate.details["n_events"] == N_EVENTS and gate.details["oracle_unconverged_excluded"] == N_UNCONVERGED
    assert gate.passed, gate.details["summary"]
    assert gate.statistic >= 0.95 and np.median(gate.details["max_z"]) < 0.5
    # one code path: the posteriors differ only in the forward model they name
    physics = heldout["posterior"].provenance
    emulated = post.provenance
    assert physics["forward"] == "Lorenz96" and emulated["forward"] == "ConvResidualEmulator"
    assert physics["solver"] == emulated["solver"] == solver.config()
    assert emulated["problem_hash"] == physics["problem_hash"] == l96.hash
    assert float(np.mean(np.asarray(result.converged))) >= 0.95, result.summary()
    assert gate.details["emulator_solver"]["n_events"] == N_EVENTS
    # the emulator-based posterior spread is the oracle's, event by event, to a few per cent
    assert 0.9 < gate.details["std_ratio_quantiles"]["median"] < 1.1
