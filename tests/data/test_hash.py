"""``dataset_hash``: the content identity of a store (encoded chunk bytes, per-chunk digests)."""

import os
import shutil

import numpy as np
import pytest
import zarr

from vardax_core.data import dataset_hash, write_catalogue
from vardax_core.problems import get_problem

N, CHUNK = 90, 20


@pytest.fixture(scope="module")
def lg():
    return get_problem("linear_gaussian", missing_fraction=0.1)


@pytest.fixture
def catalogue(tmp_path, lg):
    return write_catalogue(lg, str(tmp_path / "c.zarr"), n_events=N, seed=3, chunk_size=CHUNK)


def test_one_changed_value_changes_the_hash_and_restoring_it_restores_the_hash(catalogue):
    h = dataset_hash(catalogue)
    y = zarr.open_group(catalogue, mode="r+")["y"]
    old = float(y[57, 1, 0])
    y[57, 1, 0] = np.nextafter(old, np.inf)  # the smallest possible change
    assert dataset_hash(catalogue) != h
    y[57, 1, 0] = old
    assert dataset_hash(catalogue) == h


def test_a_flipped_mask_entry_changes_the_hash(catalogue):
    h = dataset_hash(catalogue)
    mask = zarr.open_group(catalogue, mode="r+")["mask"]
    mask[3, 0, 0] = not bool(mask[3, 0, 0])
    assert dataset_hash(catalogue) != h


def test_a_removed_chunk_changes_the_hash(catalogue):
    h = dataset_hash(catalogue)
    chunk = os.path.join(catalogue, "x_true", "c", "2", "0")
    assert os.path.isfile(chunk)
    os.remove(chunk)  # reads back as fill values: absent is hashed as absent
    assert dataset_hash(catalogue) != h


def test_identity_attributes_are_hashed_other_attributes_are_not(catalogue):
    h = dataset_hash(catalogue)
    group = zarr.open_group(catalogue, mode="r+")
    group.attrs["created"] = "another time"  # bookkeeping, not content
    assert dataset_hash(catalogue) == h
    group.attrs["seed"] = 4  # identity
    assert dataset_hash(catalogue) != h


def test_same_content_written_twice_hashes_the_same(tmp_path, lg, catalogue):
    other = write_catalogue(lg, str(tmp_path / "again.zarr"), n_events=N, seed=3, chunk_size=CHUNK)
    assert dataset_hash(other) == dataset_hash(catalogue)
    moved = str(tmp_path / "moved.zarr")
    shutil.copytree(catalogue, moved)
    assert dataset_hash(moved) == dataset_hash(catalogue)  # the path is not content


def test_leftovers_of_an_interrupted_chunk_write_are_not_content(catalogue):
    h = dataset_hash(catalogue)
    # Zarr writes a chunk to a temporary file and renames it; a kill can leave the former
    with open(os.path.join(catalogue, "y", "c", "1", "0", "0.deadbeef.partial"), "wb") as f:
        f.write(b"half a chunk")
    assert dataset_hash(catalogue) == h
