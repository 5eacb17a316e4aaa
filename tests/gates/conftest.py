"""Fixtures for the gate tests: linear_gaussian, its exact posterior, oracle data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from vardax_core.data import axis_dims
from vardax_core.gates import GateConfig
from vardax_core.problems import ExactLinearGaussianPosterior, batched_linear_gaussian_posterior, get_problem

# The sizes of the power studies (see the docstrings of vardax_core.gates._sbc / _adjoint /
# _agreement for the expected effect sizes behind them).
# linear_gaussian is tiny: compile at XLA optimisation level 0 (seconds instead of tens of seconds).
FAST = GateConfig(fast_compile=True)
SBC_CONFIG = FAST.replace(sbc_runs=500, sbc_draws=99, sbc_bins=10)
N_SEEDS = 40  # exact posterior: false-rejection rate over 40 seeds
N_SEEDS_WRONG = 40  # deliberately wrong posteriors: rejection rate over 40 seeds


@pytest.fixture(scope="session")
def lg():
    return get_problem("linear_gaussian")


@pytest.fixture(scope="session")
def exact(lg):
    return ExactLinearGaussianPosterior(lg)


def oracle_arrays(problem, key, n):
    """Simulated events with their exact posterior (an independent code path from the
    posterior under test): x, y, mask, mean, std."""
    x, y, mask = problem.simulate(key, n)
    mean, cov = batched_linear_gaussian_posterior(problem, y, mask)
    std = jnp.sqrt(jnp.diagonal(cov, axis1=1, axis2=2)).reshape(mean.shape)
    return x, y, mask, mean, std


def oracle_dataset(problem, key, n, converged=None):
    """An oracle dataset as ``open_oracle`` returns it (exact posteriors for a linear problem)."""
    x, y, mask, mean, std = (np.array(a) for a in oracle_arrays(problem, key, n))
    sdims = ("event", *axis_dims("state", problem.state_shape))
    odims = ("event", "time", *axis_dims("obs", problem.obs_shape))
    conv = np.ones(n, bool) if converged is None else np.asarray(converged)
    return xr.Dataset({
        "source_event": (("event",), np.arange(n)),
        "x_true": (sdims, x), "y": (odims, y), "mask": (odims, mask),
        "mean": (sdims, mean), "std": (sdims, std), "converged": (("event",), conv),
    })


@pytest.fixture(scope="session")
def seed_keys():
    return jax.random.split(jax.random.key(20261121), N_SEEDS)


def sbc_over_seeds(posterior, problem, keys, config=SBC_CONFIG):
    """Independent SBC simulations, one per key; one compiled program serves every seed
    (and the run_gates tests)."""
    from vardax_core.gates import simulate_sbc

    return [simulate_sbc(posterior, problem, k, config) for k in keys]


@pytest.fixture(scope="session")
def exact_sims(exact, lg, seed_keys):
    """N_SEEDS independent SBC simulations of the exact posterior."""
    return sbc_over_seeds(exact, lg, seed_keys)


@pytest.fixture(scope="session")
def scaled_sims(exact, lg, seed_keys):
    """The same for the posterior with covariance × 0.5 and × 2 (one compilation)."""
    from tests.gates._wrong import ScaledCovariance

    return {c: sbc_over_seeds(ScaledCovariance(exact, jnp.asarray(c)), lg, seed_keys[:N_SEEDS_WRONG])
            for c in (0.5, 2.0)}


@pytest.fixture(scope="session")
def shifted_sims(exact, lg, seed_keys):
    """SBC simulations of a posterior shifted as a whole by 0.3 σ, and of one whose
    sampler alone is biased by 0.3 σ (estimate and density right)."""
    from tests.gates._wrong import BiasedSampler, ShiftedPosterior

    return {name: sbc_over_seeds(cls(exact, jnp.asarray(0.3)), lg, seed_keys[:N_SEEDS_WRONG])
            for name, cls in (("shifted", ShiftedPosterior), ("biased-sampler", BiasedSampler))}


@pytest.fixture(scope="session")
def diagonal_sims(exact, lg, seed_keys):
    """SBC simulations of the diagonal approximation N(μ, diag Σ) of the exact posterior."""
    from tests.gates._wrong import DiagonalApproximation

    return sbc_over_seeds(DiagonalApproximation(exact), lg, seed_keys[:N_SEEDS_WRONG])
