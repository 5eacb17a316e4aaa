"""The emulator as a forward model: construction, config, shapes, dtypes, symmetry."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.emulator.conftest import TINY_ARCH
from vardax_core.emulator import (
    EMULATOR_DEFAULTS,
    ConvResidualEmulator,
    build_emulator,
    emulated_problem,
    emulator_from_config,
)
from vardax_core.problems import AbstractForwardModel, get_problem


@pytest.fixture(scope="module")
def emu(l96):
    return build_emulator(l96, None, jax.random.key(0))


def test_is_a_forward_model_and_a_drop_in(l96, emu):
    assert isinstance(emu, AbstractForwardModel)
    assert emu.state_shape == l96.state_shape and emu.dt == l96.forward.dt and emu.steps_per_call == 1
    swapped = l96.with_forward(emu)
    assert type(swapped.forward) is ConvResidualEmulator and swapped.hash == l96.hash
    assert eqx.tree_equal(swapped.forward, emu) and eqx.tree_equal(emulated_problem(l96, emu), swapped)
    x0 = l96.prior.mean
    assert eqx.filter_jit(lambda p, x: p.window(x))(swapped, x0).shape == l96.y_shape
    traj = eqx.filter_jit(lambda p, x: p.trajectory(x))(swapped, x0)
    assert traj.shape == (l96.n_steps + 1, *l96.state_shape) and traj.dtype == jnp.float64


def test_outputs_are_float64_whatever_the_network_dtype(l96, emu):
    x = l96.prior.sample(jax.random.key(1), (3,))
    assert emu.first.weight.dtype == jnp.float64 and emu(x).dtype == jnp.float64
    e32 = emu.astype("float32")
    assert e32.first.weight.dtype == jnp.float32 and e32.config["dtype"] == "float32"
    assert e32.x_mean.dtype == jnp.float64
    assert e32(x).dtype == jnp.float64 and e32(x.astype(jnp.float32)).dtype == jnp.float64
    assert np.allclose(e32(x), emu(x), atol=1e-5)


def test_batched_call_matches_step(l96, emu):
    x = l96.prior.sample(jax.random.key(2), (2, 3))
    out = emu(x)
    assert out.shape == (2, 3, 40)
    assert np.allclose(out[1, 2], eqx.filter_jit(lambda m, a: m.step(a))(emu, x[1, 2]), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="`x` must have shape"):
        emu(jnp.zeros((3, 39)))


def test_commutes_with_cyclic_shifts(l96, emu):
    """Pooled statistics and periodic convolutions: F(roll(x)) = roll(F(x)), like the physics."""
    x = l96.prior.sample(jax.random.key(3))
    shifted = jnp.stack([jnp.roll(x, s) for s in (0, 1, 7, 20)])
    out = emu(shifted)
    for i, s in enumerate((0, 1, 7, 20)):
        assert np.allclose(out[i], jnp.roll(out[0], s), rtol=0, atol=1e-12)


def test_config_rebuilds_the_skeleton(l96, emu):
    cfg = emu.config
    assert cfg["problem_hash"] == l96.hash and cfg["format_version"] == 1
    assert {k: cfg[k] for k in EMULATOR_DEFAULTS} == EMULATOR_DEFAULTS
    skel = emulator_from_config(cfg)
    assert isinstance(skel, ConvResidualEmulator)
    same = jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, skel, emu)
    assert all(jax.tree.leaves(same)) and jax.tree.structure(skel) == jax.tree.structure(emu)
    assert skel.config_json == emu.config_json


@pytest.mark.parametrize("arch", [{"product": False}, {"skip": False}, {"steps_per_call": 2}, TINY_ARCH])
def test_architecture_options(l96, arch):
    e = build_emulator(l96, arch, jax.random.key(0))
    assert e(l96.prior.mean).shape == (40,)
    assert e.dt == pytest.approx(l96.forward.dt * e.steps_per_call)


def test_multi_step_emulator_counts_the_window_in_its_steps(l96):
    e = build_emulator(l96, {"steps_per_call": 2}, jax.random.key(0))
    q = emulated_problem(l96, e)
    assert q.n_steps == 5 and q.obs_steps == (1, 2, 3, 4, 5) and q.hash == l96.hash
    e3 = build_emulator(l96, {"steps_per_call": 3}, jax.random.key(0))
    with pytest.raises(ValueError, match="multiples of 3"):
        emulated_problem(l96, e3)


@pytest.mark.parametrize("config, match", [
    ({"chanels": 8}, "unknown key"),
    ({"kernel": 4}, "must be odd"),
    ({"kernel": 41}, "must not exceed"),
    ({"depth": 0}, "`depth` must be an integer >= 1"),
    ({"channels": 2.5}, "`channels` must be an integer"),
    ({"activation": "swish"}, "unknown activation"),
    ({"dtype": "float16"}, "`dtype` must be one of"),
    ({"product": "yes"}, "`product` must be true or false"),
    ({"type": "transformer"}, "unknown emulator type"),
])
def test_bad_config_is_an_error(l96, config, match):
    with pytest.raises(ValueError, match=match):
        build_emulator(l96, config, jax.random.key(0))


def test_bad_problem_and_stored_config_are_errors(l96, emu):
    with pytest.raises(ValueError, match="1D"):
        build_emulator(get_problem("linear_gaussian_2d"), None, jax.random.key(0))
    with pytest.raises(ValueError, match="format version"):
        emulator_from_config({**emu.config, "format_version": 99})
    with pytest.raises(ValueError, match="lacks physics_dt"):
        emulator_from_config({k: v for k, v in emu.config.items() if k != "physics_dt"})
    with pytest.raises(ValueError, match="finite"):
        emu.with_statistics(0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="`dtype`"):
        emu.astype("int8")
    other = build_emulator(get_problem("lorenz96", forcing=10.0), TINY_ARCH, jax.random.key(0))
    with pytest.raises(ValueError, match="problem hash"):
        emulated_problem(l96, other)
