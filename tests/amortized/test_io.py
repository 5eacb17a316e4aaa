"""Serialisation and resumable training of amortized posteriors (small untrained or
briefly trained models of every head type)."""

import jax
import numpy as np
import pytest

from vardax_core.amortized import build_posterior, fit, load_posterior, save_posterior
from vardax_core.data import write_pairs
from vardax_core.gates import GateConfig, PosteriorReference, adjoint_calibration
from vardax_core.problems import get_problem

from .test_interface import SMALL, events, lg  # noqa: F401  (shared fixtures)

TRAIN = {"max_epochs": 3, "batch_size": 64, "learning_rate": 3e-3, "patience": 5}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_save_load_is_bitwise_and_jits(name, lg, events, tmp_path):
    x, y, mask = events
    post = build_posterior(lg, SMALL[name], jax.random.key(1))
    path = save_posterior(str(tmp_path / "p.vdx"), post)
    back = load_posterior(path, lg)
    k = jax.random.key(5)
    np.testing.assert_array_equal(back(y, mask), post(y, mask))
    np.testing.assert_array_equal(back.sample(y, mask, k, 3), post.sample(y, mask, k, 3))
    np.testing.assert_array_equal(back.log_prob(x, y, mask, k), post.log_prob(x, y, mask, k))
    if not name.startswith("flow"):
        return
    # a loaded flow head works under the gates' jitted Jacobian probes (loaded into a
    # shape-only skeleton it used to leak tracers here)
    r = adjoint_calibration(back, y, mask, PosteriorReference(post, lg.state_shape), jax.random.key(0),
                            GateConfig(fast_compile=True, n_probes=2, power_steps=2))
    assert r.passed and r.statistic == 0.0


def test_load_refuses_another_problem_and_a_corrupt_file(lg, tmp_path):
    post = build_posterior(lg, SMALL["gaussian-diag"], jax.random.key(1))
    path = save_posterior(str(tmp_path / "p.vdx"), post)
    with pytest.raises(ValueError, match="problem hash"):
        load_posterior(path, get_problem("linear_gaussian", missing_fraction=0.5))
    bad = tmp_path / "bad.vdx"
    bad.write_bytes(b"not a posterior")
    with pytest.raises(ValueError):
        load_posterior(str(bad))


def test_interrupted_fit_resumes_to_the_same_weights(lg, tmp_path):
    store = str(tmp_path / "pairs.zarr")
    write_pairs(lg, store, 600, 0, chunk_size=200)
    cfg = SMALL["gaussian-diag"]
    full, _ = fit(build_posterior(lg, cfg, jax.random.key(1)), store, problem=lg, config=TRAIN, seed=0,
                  progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, metrics):
        if epoch == 0:
            raise Stop

    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(Stop):
        fit(build_posterior(lg, cfg, jax.random.key(1)), store, problem=lg, config=TRAIN, seed=0,
            checkpoint_dir=ckpt, callback=stop_after_first, progress=False)
    resumed, history = fit(build_posterior(lg, cfg, jax.random.key(1)), store, problem=lg, config=TRAIN, seed=0,
                           checkpoint_dir=ckpt, progress=False)
    assert history["resumed_from_epoch"] is not None
    x, y, mask = lg.simulate(jax.random.key(9), 8)
    np.testing.assert_array_equal(resumed(y, mask), full(y, mask))
