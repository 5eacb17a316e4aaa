"""Streaming minibatches from a chunked store without loading it whole."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import xarray as xr


def split_events(n_events: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic train/validation split of event indices (sorted)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n_events)
    n_val = int(round(val_fraction * n_events))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def iter_minibatches(
    ds: xr.Dataset,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    events: np.ndarray | None = None,
    variables: Sequence[str] = ("x", "y", "mask"),
    shuffle: bool = True,
    buffer_chunks: int = 8,
    drop_last: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield dicts of numpy arrays, ``batch_size`` events each.

    The store is read one contiguous group of ``buffer_chunks`` Zarr chunks at a time
    (chunk order shuffled per epoch); the events of ``events`` (default: all) inside a
    buffer are shuffled and cut into batches. Memory is bounded by the buffer, not the
    store. Deterministic for a given (seed, epoch).
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    n = ds.sizes["event"]
    chunk = int(ds.attrs.get("chunk_size", n))
    selected = np.zeros(n, dtype=bool)
    selected[np.arange(n) if events is None else np.asarray(events)] = True
    rng = np.random.default_rng([seed, epoch])
    chunk_ids = np.arange(-(-n // chunk))
    if shuffle:
        chunk_ids = rng.permutation(chunk_ids)
    carry: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    for g in range(0, len(chunk_ids), buffer_chunks):
        group = chunk_ids[g : g + buffer_chunks]
        parts = {v: [] for v in variables}
        for c in sorted(group):
            lo, hi = c * chunk, min((c + 1) * chunk, n)
            idx = np.flatnonzero(selected[lo:hi])
            if idx.size == 0:
                continue
            for v in variables:
                parts[v].append(np.asarray(ds[v][lo:hi].values)[idx])
        if not parts[variables[0]]:
            continue
        buf = {v: np.concatenate(carry[v] + parts[v]) for v in variables}
        m = len(buf[variables[0]])
        order = rng.permutation(m) if shuffle else np.arange(m)
        n_full = m // batch_size
        for b in range(n_full):
            sel = order[b * batch_size : (b + 1) * batch_size]
            yield {v: buf[v][sel] for v in variables}
        rest = order[n_full * batch_size :]
        carry = {v: [buf[v][rest]] for v in variables}
    if not drop_last and len(carry[variables[0]]) and len(carry[variables[0]][0]):
        yield {v: carry[v][0] for v in variables}
