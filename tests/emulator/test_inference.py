"""Step 4: the oracle's solver, unchanged, on the emulated problem; the agreement gate
against the physics oracle on held-out events."""

import jax
import numpy as np
import pytest
import xarray as xr

from tests.emulator.conftest import N_EVENTS
from vardax_core.data import axis_dims
from vardax_core.emulator import emulator_agreement, emulator_agreement_from_oracle
from vardax_core.oracle import OracleAnalysis
from vardax_core.posterior import Posterior

#: Extra oracle events marked unconverged: the store-based gate must leave them out.
N_UNCONVERGED = 3


def oracle_dataset(problem, heldout, n_events: int = N_EVENTS):
    """The held-out events as an ``oracle`` dataset (what ``open_oracle`` returns), with
    N_UNCONVERGED extra copies flagged unconverged."""
    post = heldout["posterior"]
    extra = lambda a: np.concatenate([np.asarray(a), np.asarray(a)[:N_UNCONVERGED]])  # noqa: E731
    sdims = ("event", *axis_dims("state", problem.state_shape))
    odims = ("event", "time", *axis_dims("obs", problem.obs_shape))
    converged = np.arange(n_events + N_UNCONVERGED) < n_events
    return xr.Dataset({
        "y": (odims, extra(heldout["y"])), "mask": (odims, extra(heldout["mask"])),
        "mean": (sdims, extra(post.mean)), "std": (sdims, extra(post.std)), "converged": (("event",), converged),
    })


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


def test_bad_agreement_input_is_an_error(l96):
    x, y, mask = l96.simulate(jax.random.key(0), 4)
    heldout = {"y": y, "mask": mask, "posterior": Posterior.create(x, std=np.ones(x.shape))}
    with pytest.raises(ValueError, match="same number of events"):
        emulator_agreement(l96.forward, l96, y, mask, x[:3], np.ones((3, 40)))
    ds = oracle_dataset(l96, heldout, n_events=4)
    ds["converged"] = ds["converged"] & False
    with pytest.raises(ValueError, match="no converged events"):
        emulator_agreement_from_oracle(l96.forward, l96, ds)
    with pytest.raises(ValueError, match="no variable `std`"):
        emulator_agreement_from_oracle(l96.forward, l96, ds.drop_vars("std"))
