"""Content hashes of stores: the cache keys the pipeline passes between steps."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import zarr

from ._store import IDENTITY_ATTRS


def dataset_hash(path: str) -> str:
    """SHA-256 (hex, 16 chars) of a store's identity attributes and every variable's
    values, read chunk by chunk along the first axis (memory stays bounded)."""
    group = zarr.open_group(store=str(path), mode="r")
    h = hashlib.sha256()
    attrs = {k: group.attrs.get(k) for k in sorted(set(IDENTITY_ATTRS) | {"problem_config"}) if k in group.attrs}
    h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    for name in sorted(group.array_keys()):
        arr = group[name]
        h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
        step = arr.chunks[0] if arr.ndim else 1
        if arr.ndim == 0:
            h.update(np.ascontiguousarray(arr[...]).tobytes())
            continue
        for lo in range(0, arr.shape[0], step):
            h.update(np.ascontiguousarray(arr[lo : lo + step]).tobytes())
    return h.hexdigest()[:16]
