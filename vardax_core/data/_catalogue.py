"""The ``catalogue`` dataset: observed events (y, mask) to reprocess with a champion."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import xarray as xr

from .._checks import check_observations
from .._version import __version__
from ..problems import Problem
from ._pairs import layout_sizes, problem_attrs, time_coord
from ._schema import CATALOGUE
from ._store import ChunkedStore, open_store


def write_catalogue(
    problem: Problem,
    path: str,
    y=None,
    mask=None,
    *,
    n_events: int | None = None,
    seed: int = 0,
    chunk_size: int = 4096,
    x_true=None,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Write a catalogue of observed events.

    Either from arrays ``y, mask`` of shape (E, T, *obs) — validated whole (shapes,
    boolean mask, finite observed values) before anything is written — or, with
    ``n_events`` instead, a synthetic catalogue simulated from ``problem`` (with its
    truth ``x_true``, for demos and tests). Chunked and resumable like every store.
    """
    synthetic = y is None
    if synthetic:
        if n_events is None or mask is not None:
            raise ValueError("give either `y` and `mask`, or `n_events` for a synthetic catalogue")
        n = int(n_events)
    else:
        y, mask = check_observations(np.asarray(y), np.asarray(mask), problem.obs_shape, problem.n_times)
        y, mask = np.asarray(y), np.asarray(mask)
        n = y.shape[0]
        if x_true is not None and np.shape(x_true) != (n, *problem.state_shape):
            raise ValueError(f"`x_true` must have shape {(n, *problem.state_shape)}, got {np.shape(x_true)}")
    variables = ("y", "mask", "x_true") if (synthetic or x_true is not None) else ("y", "mask")
    store = ChunkedStore(
        path, CATALOGUE, n, chunk_size, layout_sizes(problem),
        attrs={**problem_attrs(problem), "seed": int(seed) if synthetic else None, "synthetic": synthetic,
               "code_version": __version__},
        coords={"time": time_coord(problem)},
        variables=variables,
    )
    key = jax.random.key(int(seed))

    def produce(start, stop):
        if synthetic:
            x, yy, mm = problem.simulate(key, store.chunk_size, start)
            k = stop - start
            return {"y": np.asarray(yy)[:k], "mask": np.asarray(mm)[:k], "x_true": np.asarray(x)[:k]}
        out = {"y": y[start:stop], "mask": mask[start:stop]}
        if x_true is not None:
            out["x_true"] = np.asarray(x_true)[start:stop]
        return out

    store.fill(produce, progress)
    return str(path)


def open_catalogue(path: str, problem: Problem | None = None) -> xr.Dataset:
    """Open and validate a catalogue; with ``problem``, its problem hash and layout must match."""
    ds = open_store(path, CATALOGUE)
    if problem is not None:
        if ds.attrs.get("problem_hash") != problem.hash:
            raise ValueError(
                f"catalogue {path!r} was made for problem {ds.attrs.get('problem_name')!r} "
                f"(hash {ds.attrs.get('problem_hash')}), not for {problem.name!r} (hash {problem.hash}): "
                "its problem configuration does not match the model's"
            )
        n = ds.sizes["event"]
        for name in ("y", "mask"):
            if tuple(ds[name].shape) != (n, *problem.y_shape):
                raise ValueError(f"catalogue variable `{name}` has shape {tuple(ds[name].shape)}, expected {(n, *problem.y_shape)}")
    return ds
