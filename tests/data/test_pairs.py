"""The pairs store: exact round trip, resume after a real kill, validation, streaming."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import zarr

from vardax_core.data import dataset_hash, iter_minibatches, open_pairs, split_events, write_pairs
from vardax_core.problems import get_problem

N, CHUNK, SEED = 700, 128, 11


@pytest.fixture(scope="module")
def l96():
    return get_problem("lorenz96", missing_fraction=0.1)


@pytest.fixture(scope="module")
def store(tmp_path_factory, l96):
    path = str(tmp_path_factory.mktemp("pairs") / "pairs.zarr")
    write_pairs(l96, path, N, SEED, chunk_size=CHUNK)
    return path


def test_round_trip_is_exact(store, l96):
    ds = open_pairs(store, l96)
    assert ds.sizes["event"] == N and ds.attrs["problem_hash"] == l96.hash and ds.attrs["seed"] == SEED
    key = jax.random.key(SEED)
    for c in range(0, N, CHUNK):
        x, y, mask = l96.simulate(key, CHUNK, c)
        n = min(CHUNK, N - c)
        np.testing.assert_array_equal(ds.x[c : c + n].values, np.asarray(x)[:n])
        np.testing.assert_array_equal(ds.y[c : c + n].values, np.asarray(y)[:n])
        np.testing.assert_array_equal(ds.mask[c : c + n].values, np.asarray(mask)[:n])
    np.testing.assert_array_equal(ds.event.values, np.arange(N))
    np.testing.assert_allclose(ds.time.values, np.array(l96.obs_steps) * 0.05)
    assert ds.x.dims == ("event", "state") and ds.y.dims == ("event", "time", "obs")


def test_rewrite_is_a_no_op_and_hash_is_stable(store, l96):
    h = dataset_hash(store)
    write_pairs(l96, store, N, SEED, chunk_size=CHUNK)
    assert dataset_hash(store) == h


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from vardax_core.data import write_pairs
    from vardax_core.problems import get_problem
    path, kill_after = sys.argv[1], int(sys.argv[2])
    def progress(done, total):
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    write_pairs(get_problem("lorenz96", missing_fraction=0.1), path, {N}, {SEED}, chunk_size={CHUNK}, progress=progress)
    """
).format(N=N, SEED=SEED, CHUNK=CHUNK)


def test_resume_after_kill_gives_the_identical_store(tmp_path, store, l96):
    path = str(tmp_path / "killed.zarr")
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), path, "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    done = np.asarray(zarr.open_group(path, mode="r")["chunk_done"][...])
    assert done.sum() == 3 and not done.all()
    with pytest.raises(ValueError, match="incomplete: 3 of 6 chunks"):
        open_pairs(path)
    write_pairs(l96, path, N, SEED, chunk_size=CHUNK)
    assert dataset_hash(path) == dataset_hash(store)
    a, b = open_pairs(path, l96), open_pairs(store, l96)
    for v in ("x", "y", "mask", "event"):
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_reopening_with_another_identity_is_refused(store, l96):
    with pytest.raises(ValueError, match="seed=11.*seed=12"):
        write_pairs(l96, store, N, 12, chunk_size=CHUNK)
    with pytest.raises(ValueError, match="problem_hash"):
        write_pairs(get_problem("lorenz96"), store, N, SEED, chunk_size=CHUNK)


def test_reader_validation(tmp_path, store, l96):
    with pytest.raises(ValueError, match="problem_hash"):
        open_pairs(store, get_problem("lorenz96", noise_std=2.0))
    with pytest.raises(ValueError, match="no Zarr store"):
        open_pairs(str(tmp_path / "nothing.zarr"))
    # a store with a variable removed
    broken = str(tmp_path / "broken.zarr")
    write_pairs(l96, broken, 100, SEED, chunk_size=50)
    zarr.open_group(broken, mode="r+").__delitem__("mask")
    with pytest.raises(ValueError, match="missing variable `mask`"):
        open_pairs(broken)


def test_bad_writer_arguments_write_nothing(tmp_path, l96):
    path = tmp_path / "bad.zarr"
    with pytest.raises(ValueError, match="n_events"):
        write_pairs(l96, str(path), 0, SEED)
    with pytest.raises(ValueError, match="chunk_size"):
        write_pairs(l96, str(path), 10, SEED, chunk_size=0)
    assert not path.exists()


def test_minibatches_cover_each_event_once_and_are_deterministic(store, l96):
    ds = open_pairs(store, l96)
    train, val = split_events(N, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == N
    seen = []
    for b in iter_minibatches(ds, 64, seed=1, epoch=0, events=train, drop_last=False, variables=("x", "mask")):
        assert b["x"].shape[1:] == (40,) and b["mask"].dtype == bool
        seen.append(b["x"])
    seen = np.concatenate(seen)
    assert len(seen) == len(train)
    ref = ds.x.values[train]
    assert np.array_equal(np.sort(seen, axis=0), np.sort(ref, axis=0))
    first = [b["x"] for b in iter_minibatches(ds, 64, seed=1, epoch=0, events=train)]
    again = [b["x"] for b in iter_minibatches(ds, 64, seed=1, epoch=0, events=train)]
    other = [b["x"] for b in iter_minibatches(ds, 64, seed=1, epoch=1, events=train)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    assert all(len(b) == 64 for b in first)
