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


def test_consistency_penalty_products_are_the_noise_identity(lg):
    """The penalty's target T ξ is Σ_u Sᵀ G'ᵀ W diag(s_y) ξ (Stein for a Gaussian head; G is
    linear here, so exact for any draws) and its other side the head mean's JVP, checked
    against dense matrices formed independently."""
    from vardax_core.amortized._consistency import ConsistencyConfig, JacobianConsistency
    from vardax_core.amortized._simulated import _simulated_standardizer

    post = build_posterior(lg, {"encoder": {"type": "mlp", "features": 16, "width": 32},
                                "head": {"type": "gaussian", "covariance": "full", "width": 32}},
                           jax.random.key(1))
    n_obs = int(np.prod(lg.y_shape))
    post = post.with_standardizer(_simulated_standardizer(lg, jax.random.key(2), 2048, 1024, lg.n_state, n_obs,
                                                          post.standardizer.whiten))
    pen = JacobianConsistency(lg, ConsistencyConfig(weight=1.0, n_events=4, n_samples=4))
    _, y, mask = lg.simulate(jax.random.key(3), 2)
    st = post.standardizer
    ys = st.y_to_std(y.reshape(2, -1), mask.reshape(2, -1))[0].astype(jnp.float64)
    xi = jax.random.normal(jax.random.key(4), ys.shape) * mask[0].reshape(-1)
    j_xi, target = pen.products(post, ys, mask[0], xi, jax.random.key(5))
    c = (post.encoder(ys.reshape(mask[0].shape), mask[0]), ys, mask[0].reshape(-1).astype(ys.dtype))
    _, F, _ = post.head.gaussian(c)
    G = jax.jacfwd(lambda x: lg.window(x.reshape(lg.state_shape)).reshape(-1))(jnp.zeros(lg.n_state))
    W = jnp.where(mask[0].reshape(-1), lg.noise.R_inv(jnp.ones(lg.y_shape)).reshape(-1), 0.0)
    S = st.x_chol if st.x_chol is not None else jnp.diag(st.x_std)
    expected = F @ F.T @ S.T @ G.T @ (W * st.y_std * xi)
    np.testing.assert_allclose(target, expected, rtol=1e-8, atol=1e-10)
    J = jax.jacfwd(lambda yy: post.head.point((post.encoder(yy.reshape(mask[0].shape), mask[0]), yy, c[2])))(ys)
    np.testing.assert_allclose(j_xi, J @ xi, rtol=1e-8, atol=1e-10)
    # in training: finite, and weight 0 is no penalty at all
    value = pen(post, y, mask, jax.random.key(6))
    assert np.isfinite(float(value)) and float(value) > 0
    with pytest.raises(ValueError, match="n_samples"):
        ConsistencyConfig(n_samples=3)
    budget = {"n_pairs": 2048, "epoch_pairs": 1024, "n_val": 256, "n_standardize": 1024}
    a, _ = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False,
                         consistency={"weight": 0.0})
    b, _ = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False)
    c2, _ = fit_simulated(_fresh(lg), lg, budget=budget, config=TRAIN, seed=3, progress=False,
                          consistency={"weight": 1.0, "n_events": 32})
    leaves = lambda m: jax.tree.leaves(eqx.filter((m.encoder, m.head), eqx.is_array))  # noqa: E731
    assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves(c2), leaves(b)))
    assert c2.config["training"]["consistency"]["weight"] == 1.0
