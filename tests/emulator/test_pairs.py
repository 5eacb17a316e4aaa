"""Step 3 → 5: training pairs simulated with the emulator in place of the physics."""

import jax
import numpy as np
import pytest

from tests.emulator.conftest import TINY_ARCH
from vardax_core.data import dataset_hash, open_pairs, write_pairs
from vardax_core.emulator import build_emulator, emulated_problem, emulator_fingerprint, write_emulated_pairs

N, CHUNK, SEED = 48, 16, 7


def _read(path, problem):
    ds = open_pairs(path, problem)
    return {k: np.asarray(ds[k].values) for k in ("x", "y", "mask")}, dict(ds.attrs)


@pytest.fixture(scope="module")
def physics(l96, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pairs") / "physics.zarr")
    write_pairs(l96, path, N, SEED, chunk_size=CHUNK)
    return path


def test_physics_forward_as_the_emulator_writes_the_physics_pairs(l96, physics, tmp_path):
    """One code path: with the physics model in the emulator's place the store's events
    are bitwise the physics pairs'; only the provenance differs."""
    path = write_emulated_pairs(l96, l96.forward, str(tmp_path / "same.zarr"), N, SEED, chunk_size=CHUNK)
    got, attrs = _read(path, l96)
    want, phys_attrs = _read(physics, l96)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert phys_attrs["forward"] == "physics" and "identity" not in phys_attrs
    assert attrs["forward"] == "emulator" and attrs["identity"] == f"emulator:{emulator_fingerprint(l96.forward)}"
    assert attrs["problem_hash"] == l96.hash
    assert dataset_hash(path) != dataset_hash(physics)  # the identity is part of the content hash


def test_emulated_pairs_differ_only_by_the_window_operator(l96, physics, tmp_path):
    """Same seed: x₀, the noise and the mask are the physics pairs'; y_emu − y_phys is
    G_ψ(x₀) − G(x₀) on observed entries (the noise cancels)."""
    emulator = build_emulator(l96, TINY_ARCH, jax.random.key(3))  # untrained: far from the physics
    path = write_emulated_pairs(l96, emulator, str(tmp_path / "emu.zarr"), N, SEED, chunk_size=CHUNK,
                                attrs={"emulator_model": "vardax-lorenz96-emulator", "emulator_version": "4"})
    got, attrs = _read(path, l96)
    want, _ = _read(physics, l96)
    np.testing.assert_array_equal(got["x"], want["x"])
    np.testing.assert_array_equal(got["mask"], want["mask"])
    m = want["mask"]
    g_emu = np.asarray(jax.vmap(emulated_problem(l96, emulator).window)(want["x"]))
    g_phys = np.asarray(jax.vmap(l96.window)(want["x"]))
    # the untrained emulator grows fast along the window: compare relative to the window values
    np.testing.assert_allclose((got["y"] - want["y"])[m], (g_emu - g_phys)[m], rtol=1e-12, atol=1e-9)
    assert np.abs(g_emu - g_phys)[m].max() > 0.1  # the check above is not vacuous
    assert np.all(np.isnan(got["y"][~m]))
    assert attrs["emulator_version"] == "4" and attrs["emulator_model"] == "vardax-lorenz96-emulator"
    assert attrs["emulator_fingerprint"] == emulator_fingerprint(emulator)
    assert '"channels": 4' in attrs["emulator_config"]


def test_resuming_with_another_emulator_is_refused(l96, tmp_path):
    path = str(tmp_path / "emu.zarr")
    a = build_emulator(l96, TINY_ARCH, jax.random.key(0))
    b = build_emulator(l96, TINY_ARCH, jax.random.key(1))
    assert emulator_fingerprint(a) != emulator_fingerprint(b)
    assert emulator_fingerprint(a) == emulator_fingerprint(build_emulator(l96, TINY_ARCH, jax.random.key(0)))
    write_emulated_pairs(l96, a, path, N, SEED, chunk_size=CHUNK)
    write_emulated_pairs(l96, a, path, N, SEED, chunk_size=CHUNK)  # complete: nothing to do
    with pytest.raises(ValueError, match="identity"):
        write_emulated_pairs(l96, b, path, N, SEED, chunk_size=CHUNK)


def test_several_model_steps_per_call(l96, tmp_path):
    """An emulator advancing two model steps per call simulates the same window."""
    emulator = build_emulator(l96, {**TINY_ARCH, "steps_per_call": 2}, jax.random.key(0))
    path = write_emulated_pairs(l96, emulator, str(tmp_path / "s2.zarr"), N, SEED, chunk_size=CHUNK)
    got, _ = _read(path, l96)
    m = got["mask"]
    g = np.asarray(jax.vmap(emulated_problem(l96, emulator).window)(got["x"]))
    assert np.all(np.isfinite(got["y"][m])) and g.shape == got["y"].shape


def test_a_simulator_of_another_problem_is_refused(l96, tmp_path):
    from vardax_core.problems import get_problem

    other = get_problem("lorenz96", forcing=9.0)
    with pytest.raises(ValueError, match="simulator"):
        write_pairs(l96, str(tmp_path / "x.zarr"), N, SEED, chunk_size=CHUNK, simulator=other)
