"""The training loop's mechanics on a tiny emulator: determinism, checkpoint resume,
callbacks, the returned model and its provenance, and bad input."""

import jax
import numpy as np
import pytest

from tests.emulator.conftest import TINY_ARCH, TINY_TRAIN
from vardax_core.emulator import (
    EmulatorTrainConfig,
    build_emulator,
    fit_emulator,
    simulate_transitions,
)
from vardax_core.emulator._train import CHECKPOINT_FILE
from vardax_core.problems import get_problem


class Interrupt(Exception):
    pass


def _leaves(model):
    return [np.asarray(a) for a in jax.tree.leaves(model)]


def _bitwise_equal(a, b) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def tiny(l96):
    return build_emulator(l96, TINY_ARCH, jax.random.key(1))


@pytest.fixture(scope="module")
def uninterrupted(l96, tiny, tmp_path_factory):
    seen = []
    model, history = fit_emulator(tiny, l96, config=TINY_TRAIN, seed=3, progress=False,
                                  checkpoint_dir=str(tmp_path_factory.mktemp("full")),
                                  callback=lambda epoch, metrics: seen.append((epoch, metrics)))
    return model, history, seen


def test_history_callback_and_provenance(l96, uninterrupted):
    model, history, seen = uninterrupted
    assert [e for e, _ in seen] == [0, 1, 2]
    keys = {"train_loss", "val_loss", "val_forward_loss", "val_tangent_loss", "val_forward_error_mean",
            "val_forward_error_q95", "best_val_loss", "learning_rate", "epoch_seconds", "pairs_per_second"}
    assert all(set(m) == keys for _, m in seen)
    assert all(np.isfinite(v) for _, m in seen for v in m.values())
    # 24 trajectories, 6 held out, 10 pairs each
    assert history["n_train"] == 180 and history["n_val"] == 60 and history["resumed_from_epoch"] is None
    assert history["best_val_loss"] == min(m["val_loss"] for _, m in seen)
    assert seen[-1][1]["val_loss"] < seen[0][1]["val_loss"]
    training = model.config["training"]
    assert training["seed"] == 3 and training["train_config"] == EmulatorTrainConfig.from_dict(TINY_TRAIN).to_dict()
    assert training["epochs_run"] == 3 and training["best_epoch"] == history["best_epoch"]
    # trained in float32, returned in the emulator's dtype (float64), statistics set
    assert model.dtype == "float64" and model.first.weight.dtype == np.float64
    stats = model.statistics()
    assert stats["x_std"] > 1 and 0 < stats["d_std"] < stats["x_std"]


def test_resume_equals_uninterrupted(l96, tiny, uninterrupted, tmp_path):
    """Interrupted after epoch 1 and resumed: the same weights, bit for bit, and the same
    history (the per-epoch metrics of a deterministic run)."""
    full, full_history, _ = uninterrupted

    def stop(epoch, metrics):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_emulator(tiny, l96, config=TINY_TRAIN, seed=3, progress=False, checkpoint_dir=str(tmp_path), callback=stop)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    resumed, history = fit_emulator(tiny, l96, config=TINY_TRAIN, seed=3, progress=False,
                                    checkpoint_dir=str(tmp_path))
    assert history["resumed_from_epoch"] == 2
    assert _bitwise_equal(resumed, full) and resumed.config_json == full.config_json
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("epoch_seconds", "pairs_per_second")}  # noqa: E731
                       for e in h["epochs"]]
    assert strip(history) == strip(full_history)
    # a finished run's checkpoint returns its result at once
    again, h2 = fit_emulator(tiny, l96, config=TINY_TRAIN, seed=3, progress=False, checkpoint_dir=str(tmp_path))
    assert _bitwise_equal(again, full) and h2["resumed_from_epoch"] == 3
    # a checkpoint of another run is refused, naming what differs
    with pytest.raises(ValueError, match="another training run.*seed"):
        fit_emulator(tiny, l96, config=TINY_TRAIN, seed=4, progress=False, checkpoint_dir=str(tmp_path))


def test_transitions_are_deterministic_physics_pairs(l96):
    a = simulate_transitions(l96, jax.random.key(0), 3)
    b = simulate_transitions(l96, jax.random.key(0), 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["x"].shape == (3, 10, 40) and a["x_next"].shape == (3, 10, 40)
    assert np.array_equal(a["x"][:, 1:], a["x_next"][:, :-1])  # consecutive states of one trajectory
    step = jax.jit(jax.vmap(l96.forward.step))
    assert np.allclose(step(a["x"][:, 0]), a["x_next"][:, 0], rtol=0, atol=1e-12)
    two = simulate_transitions(l96, jax.random.key(0), 3, steps_per_call=2)
    assert two["x"].shape == (3, 9, 40) and np.array_equal(two["x_next"][:, 0], a["x_next"][:, 1])
    with pytest.raises(ValueError, match="the trajectory length"):
        simulate_transitions(l96, jax.random.key(0), 3, steps_per_call=11)


@pytest.mark.parametrize("config, match", [
    ({"max_epoch": 3}, "no field"),
    ({"n_trajectories": 1}, "`n_trajectories`"),
    ({"trajectory_steps": 0}, "`trajectory_steps`"),
    ({"spread": 0.0}, "`spread`"),
    ({"jacobian_weight": -1.0}, "`jacobian_weight`"),
    ({"train_dtype": "bfloat16"}, "`train_dtype`"),
    ({"learning_rate": 0.0}, "`learning_rate`"),
    ({"batch_size": 0}, "`batch_size`"),
    ({"val_fraction": 1.0}, "`val_fraction`"),
])
def test_bad_train_config_is_an_error(config, match):
    with pytest.raises(ValueError, match=match):
        EmulatorTrainConfig.from_dict(config)


def test_config_round_trips():
    cfg = EmulatorTrainConfig(max_epochs=7, spread=1.5)
    assert EmulatorTrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.optim().max_epochs == 7 and cfg.optim().learning_rate == cfg.learning_rate


def test_bad_fit_input_is_an_error(l96, tiny):
    other = get_problem("lorenz96", forcing=10.0)
    with pytest.raises(ValueError, match="problem hash"):
        fit_emulator(tiny, other, config=TINY_TRAIN, progress=False)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        fit_emulator(tiny, l96, config={**TINY_TRAIN, "batch_size": 512}, progress=False)
    with pytest.raises(TypeError, match="ConvResidualEmulator"):
        fit_emulator(l96.forward, l96, config=TINY_TRAIN, progress=False)
