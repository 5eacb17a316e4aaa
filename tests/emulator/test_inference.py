"""Step 4's agreement gate: bad input is an error (the trained emulator's 4DVar against
the physics oracle is in test_trained.py)."""

import jax
import numpy as np
import pytest

from tests.emulator.conftest import oracle_dataset
from vardax_core.emulator import emulator_agreement, emulator_agreement_from_oracle
from vardax_core.posterior import Posterior


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
