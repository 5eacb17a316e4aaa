"""Cache keys for step tasks: a key per (step, inputs), refreshed when the output is gone.

Prefect caches a task's result under the key; a rerun with the same key is skipped
(state ``Cached``). Because outputs live outside Prefect (Zarr stores, MLflow
versions), each step also says whether its output is still valid; if not, the cache
entry is refreshed instead of returning a reference to something deleted.
"""

from __future__ import annotations

from typing import Any


def keyed_task_options(key: str, valid: bool) -> dict[str, Any]:
    return {"cache_key_fn": lambda *_: key, "refresh_cache": not valid}


def store_complete(path: str) -> bool:
    """True when a chunked store exists and every chunk is written."""
    from vardax_core.data import store_exists

    if not store_exists(path):
        return False
    import numpy as np
    import zarr

    group = zarr.open_group(store=path, mode="r")
    return "schema" in group.attrs and "chunk_done" in group and bool(np.all(group["chunk_done"][...]))
