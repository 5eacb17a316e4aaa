"""The ``pairs`` dataset: simulated (x₀, y, mask) training pairs for a problem."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import xarray as xr

from .._version import __version__
from ..problems import Problem
from ._schema import PAIRS
from ._store import ChunkedStore, open_store


def problem_attrs(problem: Problem) -> dict:
    """Dataset attributes that tie a store to a problem configuration."""
    return {"problem_config": problem.config_json, "problem_hash": problem.hash, "problem_name": problem.name}


def layout_sizes(problem: Problem) -> dict:
    return {"state": problem.state_shape, "obs": problem.obs_shape, "time": (problem.n_times,)}


def time_coord(problem: Problem) -> tuple[str, np.ndarray]:
    """Observation times (model time units) as the ``time`` coordinate."""
    return "time", np.asarray(problem.obs_steps, dtype=np.float64) * float(problem.forward.dt)


def write_pairs(
    problem: Problem,
    path: str,
    n_events: int,
    seed: int,
    chunk_size: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    *,
    simulator: Problem | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> str:
    """Simulate ``n_events`` pairs with ``problem.simulate`` and write them to ``path``.

    Event i is drawn with the key ``fold_in(jax.random.key(seed), i)`` and every chunk
    is simulated as a full batch of ``chunk_size``, so a resumed write is bitwise equal
    to an uninterrupted one. Resumable: rerunning
    after a crash writes only the unfinished chunks. Returns ``path``.

    ``simulator``: draw the events with this problem instead — the same problem (same
    configuration hash and layout) with another forward model, e.g. a neural emulator
    (``vardax_core.emulator.write_emulated_pairs``); the store still belongs to
    ``problem``. ``attrs``: extra store attributes (provenance; an ``identity`` entry
    becomes part of the store's identity and content hash).
    """
    sim = problem if simulator is None else simulator
    if sim.hash != problem.hash or sim.state_shape != problem.state_shape or sim.y_shape != problem.y_shape:
        raise ValueError(
            f"write_pairs: `simulator` must be {problem.name!r} (hash {problem.hash}, state {problem.state_shape}, "
            f"y {problem.y_shape}) with another forward model, got {sim.name!r} (hash {sim.hash}, state "
            f"{sim.state_shape}, y {sim.y_shape})"
        )
    store = ChunkedStore(
        path, PAIRS, n_events, chunk_size, layout_sizes(problem),
        attrs={"forward": "physics", **(attrs or {}), **problem_attrs(problem), "seed": int(seed),
               "code_version": __version__},
        coords={"time": time_coord(problem)},
    )
    key = jax.random.key(int(seed))
    size = store.chunk_size

    def produce(start, stop):
        # always simulate a full chunk (one compiled shape) and keep what is needed
        x, y, mask = sim.simulate(key, size, start)
        n = stop - start
        return {"x": np.asarray(x)[:n], "y": np.asarray(y)[:n], "mask": np.asarray(mask)[:n]}

    store.fill(produce, progress)
    return str(path)


def open_pairs(path: str, problem: Problem | None = None) -> xr.Dataset:
    """Open and validate a ``pairs`` store (lazily). With ``problem``, the store's
    ``problem_hash`` must match it and the array shapes must fit its layout."""
    ds = open_store(path, PAIRS, {"problem_hash": problem.hash} if problem is not None else None)
    if problem is not None:
        n = ds.sizes["event"]
        for name, shape in (("x", (n, *problem.state_shape)), ("y", (n, *problem.y_shape)), ("mask", (n, *problem.y_shape))):
            if tuple(ds[name].shape) != shape:
                raise ValueError(f"variable `{name}` in {path!r} has shape {tuple(ds[name].shape)}, expected {shape}")
    return ds
