"""Content hashes of stores: the cache keys the pipeline passes between steps.

A store's hash covers its identity attributes and, for every array, its metadata (name,
dtype, shape, chunking, codecs, fill value, …) and every stored chunk's bytes exactly as
stored — encoded, read straight from the Zarr store without decompressing. Any change to
a value changes its chunk's bytes and so the hash; a chunk that is absent (never written)
is hashed as absent. Each chunk is hashed on its own with BLAKE2b (256-bit digest), in
parallel threads (hashlib releases the GIL), and the hash is the BLAKE2b of the ordered
list of chunk digests, so memory stays bounded by a few chunks. BLAKE2b rather than
SHA-256: on CPUs without SHA instructions (this project's 2-core machine) it hashes
about twice as fast (615 against 307 MB/s, one thread) and hashing the catalogue is a
full read on every reprocessing run.

Because the bytes hashed are the encoded ones, the same values stored with another codec,
chunking or chunk-writing policy hash differently: a false "changed" (work redone), never
a false "same". Stores written by :class:`~vardax_core.data.ChunkedStore` are encoded
deterministically, so a resumed write hashes like an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ._store import IDENTITY_ATTRS

# Part of the hashed bytes: a change of what is hashed (or how) must change every hash.
_HASH_FORMAT = b"vardax-dataset-hash/3 (encoded chunks, per-chunk blake2b-256)\n"


def _blake2b(data=b""):
    return hashlib.blake2b(data, digest_size=32)


def _storage_keys(arr: zarr.Array) -> list[str]:
    """Store keys of every chunk (or shard) of ``arr``, absent ones included, in grid order."""
    per = arr.shards or arr.chunks
    grid = (range(math.ceil(s / c)) for s, c in zip(arr.shape, per, strict=True))
    prefix = arr.store_path.path
    return [f"{prefix}/{arr.metadata.encode_chunk_key(coords)}" for coords in itertools.product(*grid)]


def _hash_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def dataset_hash(path: str) -> str:
    """BLAKE2b (hex, 16 chars) of a store's identity attributes, every array's metadata
    and every stored chunk's encoded bytes (see the module docstring)."""
    group = zarr.open_group(store=str(path), mode="r")
    h = _blake2b(_HASH_FORMAT)
    attrs = {k: group.attrs.get(k) for k in sorted(set(IDENTITY_ATTRS) | {"problem_config"}) if k in group.attrs}
    h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    store = group.store
    proto = default_buffer_prototype()

    def digest(key: str) -> bytes:
        buf = sync(store.get(key, prototype=proto))
        return b"absent" if buf is None else _blake2b(buf.as_buffer_like()).digest()

    with ThreadPoolExecutor(_hash_workers(), thread_name_prefix="dataset-hash") as pool:
        for name in sorted(group.array_keys()):
            arr = group[name]
            meta = arr.metadata.to_dict()
            h.update(f"\n{name}:".encode() + json.dumps(meta, sort_keys=True, default=str).encode())
            keys = _storage_keys(arr)
            for key, d in zip(keys, pool.map(digest, keys), strict=True):
                h.update(key.encode() + b"=" + d)
    return h.hexdigest()[:16]
