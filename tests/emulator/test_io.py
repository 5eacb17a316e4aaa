"""Saving and loading emulators: bitwise round trip, config without weights, clear errors."""

import json

import jax
import numpy as np
import pytest

from tests.emulator.conftest import TINY_ARCH
from vardax_core.amortized._serial import MAGIC, write_blob
from vardax_core.emulator import build_emulator, load_emulator, read_emulator_config, save_emulator
from vardax_core.problems import get_problem


@pytest.fixture(scope="module")
def emu(l96):
    """A small emulator with non-trivial statistics, in float32 (the dtype must survive)."""
    e = build_emulator(l96, {**TINY_ARCH, "dtype": "float32"}, jax.random.key(4))
    return e.with_statistics(2.25, 3.5, -0.01, 0.9).replace_config(training={"seed": 1})


@pytest.fixture(scope="module")
def saved(emu, tmp_path_factory):
    return save_emulator(str(tmp_path_factory.mktemp("io") / "emulator.vdx"), emu)


def test_round_trip_is_bitwise(l96, emu, saved):
    loaded = load_emulator(saved, l96)
    a, b = jax.tree.leaves(emu), jax.tree.leaves(loaded)
    assert len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))
    assert loaded.config_json == emu.config_json and loaded.dtype == "float32"
    x = l96.prior.sample(jax.random.key(0), (16,))
    assert np.array_equal(np.asarray(loaded(x)), np.asarray(emu(x)))
    assert read_emulator_config(saved) == emu.config
    assert read_emulator_config(saved)["training"] == {"seed": 1}


def _rewrite(src, dst, **header_changes):
    """A copy of a saved emulator with its JSON header changed."""
    raw = open(src, "rb").read()
    line_end = raw.index(b"\n", len(MAGIC))
    header = json.loads(raw[len(MAGIC):line_end])
    header.update(header_changes)
    with open(dst, "wb") as f:
        f.write(MAGIC + json.dumps(header).encode() + raw[line_end:])
    return str(dst)


def test_bad_files_are_errors(l96, emu, saved, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_emulator(str(tmp_path / "missing.vdx"))
    junk = tmp_path / "junk.vdx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad magic"):
        load_emulator(str(junk))
    other_kind = tmp_path / "other.vdx"
    write_blob(str(other_kind), emu, {}, kind="vardax-amortized-posterior", version=1)
    with pytest.raises(ValueError, match="holds a 'vardax-amortized-posterior'"):
        load_emulator(str(other_kind))
    with pytest.raises(ValueError, match="format version 99"):
        load_emulator(_rewrite(saved, tmp_path / "v99.vdx", version=99))
    with pytest.raises(ValueError, match="emulates problem hash"):
        load_emulator(saved, get_problem("lorenz96", forcing=10.0))
    cfg = read_emulator_config(saved)
    with pytest.raises(ValueError, match="unknown key"):
        load_emulator(_rewrite(saved, tmp_path / "arch.vdx", config={**cfg, "width": 3}))
    with pytest.raises(ValueError, match="do not fit"):  # the config says 8 channels, the weights have 4
        load_emulator(_rewrite(saved, tmp_path / "wide.vdx", config={**cfg, "channels": 8}))
    with pytest.raises(ValueError, match="disagrees with the weights"):
        load_emulator(_rewrite(saved, tmp_path / "stats.vdx", statistics={**emu.statistics(), "x_std": 1.0}))
    truncated = tmp_path / "truncated.vdx"
    truncated.write_bytes(open(saved, "rb").read()[:-16])
    with pytest.raises(ValueError, match="do not fit"):
        load_emulator(str(truncated))
    with pytest.raises(TypeError, match="ConvResidualEmulator"):
        save_emulator(str(tmp_path / "physics.vdx"), l96.forward)

