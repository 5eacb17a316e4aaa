"""Training on fresh simulated pairs (``fit_simulated``): accuracy against the exact
linear-Gaussian posterior, reproducibility from the seed, bit-exact resume, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.amortized.conftest import LG_MODELS
from tests.amortized.test_linear_gaussian import gaussian_kl, held_out
from vardax_core.amortized import SimulationBudget, build_posterior, fit_simulated
from vardax_core.problems import ExactLinearGaussianPosterior, get_problem

TRAIN = {"learning_rate": 1e-2, "batch_size": 256, "patience": 50}


@pytest.fixture(scope="module")
def lg():
    return get_problem("linear_gaussian")


def _fresh(lg):
    return build_posterior(lg, LG_MODELS["gaussian"], jax.random.key(0))


@pytest.mark.slow
def test_fresh_pairs_reach_the_exact_posterior(lg):
    budget = SimulationBudget(n_pairs=1_000_000, epoch_pairs=100_000)
    post, history = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=1, progress=False)
    x, y, mask = held_out(lg)
    p, q = ExactLinearGaussianPosterior(lg).posterior(y, mask), post.posterior(y, mask)
    rms = float(jnp.sqrt(jnp.mean(((q.mean - p.mean) / p.std) ** 2)))
    kl = float(gaussian_kl(p.mean, p.covariance(), q.mean, q.covariance()).mean())
    pps = np.median([e["pairs_per_second"] for e in history["epochs"]])
    print(f"fresh pairs: {history['n_train']} drawn, mean RMS error {rms:.4f} σ_post, KL {kl:.4f}; "
          f"{pps:.0f} pairs/s")
    assert history["n_train"] == 10 * (100_000 // 256) * 256  # whole batches of every pseudo-epoch
    assert rms <= 0.05 and kl <= 0.05
    t = post.config["training"]
    assert t["source"] == "simulated" and t["budget"]["n_pairs"] == 1_000_000 and t["problem_hash"] == lg.hash


def test_reproducible_from_the_seed_and_resumes_bit_for_bit(lg, tmp_path):
    budget = {"n_pairs": 4096, "epoch_pairs": 1024, "n_val": 256, "n_standardize": 2048}
    a, ha = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False)
    b, _ = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False)
    c, _ = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=4, progress=False)
    leaves = lambda m: jax.tree.leaves(eqx.filter((m.encoder, m.head, m.standardizer), eqx.is_array))  # noqa: E731
    assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))
    assert len(ha["epochs"]) == 4 and ha["n_train"] == 4 * 1024

    class Stop(Exception):
        pass

    def interrupt(epoch, metrics):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False,
                      checkpoint_dir=str(tmp_path), callback=interrupt)
    d, hd = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False,
                          checkpoint_dir=str(tmp_path))
    assert hd["resumed_from_epoch"] == 2
    assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(d)))


def test_bad_budgets_are_refused(lg):
    with pytest.raises(ValueError, match="`n_pairs`"):
        SimulationBudget(n_pairs=0)
    with pytest.raises(ValueError, match="`epoch_pairs`"):
        SimulationBudget(n_pairs=100, epoch_pairs=1000)
    with pytest.raises(ValueError, match="unknown field"):
        SimulationBudget.from_dict({"pairs": 10})
    with pytest.raises(ValueError, match="at least one batch"):
        fit_simulated(_fresh(lg), lg, budget={"n_pairs": 1000, "epoch_pairs": 100}, config=TRAIN, progress=False)
    with pytest.raises(ValueError, match="augment"):
        fit_simulated(_fresh(lg), lg, budget={"n_pairs": 1000, "epoch_pairs": 512},
                      config={**TRAIN, "augment": "ring_shift"}, progress=False)
