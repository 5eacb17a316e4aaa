"""Cycle results in Zarr: one store per twin run and one per method, each written whole
into a temporary folder and moved into place (a reader never sees half a store; a rerun
skips what is there)."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np
import xarray as xr

from .._version import __version__
from ._driver import CycleResult

#: ``schema`` attribute of the two kinds of store
TWIN_SCHEMA, METHOD_SCHEMA = "vardax-cycle-twin", "vardax-cycle-method"


def _dims(shape, prefix):
    return tuple(f"{prefix}_{i}" for i in range(len(shape)))


def twin_dataset(truth, y, mask, attrs: dict) -> xr.Dataset:
    """truth (cycle 0 … K, *state), y and mask (cycle 1 … K, *obs)."""
    truth, y, mask = np.asarray(truth), np.asarray(y), np.asarray(mask)
    sd, od = _dims(truth.shape[1:], "state"), _dims(y.shape[1:], "obs")
    return xr.Dataset(
        {"truth": (("time", *sd), truth), "y": (("cycle", *od), y), "mask": (("cycle", *od), mask)},
        coords={"time": np.arange(truth.shape[0]), "cycle": np.arange(1, y.shape[0] + 1)},
        attrs={"schema": TWIN_SCHEMA, "code_version": __version__, **_json(attrs)},
    )


def method_dataset(result: CycleResult, attrs: dict, summary: dict) -> xr.Dataset:
    """Per-cycle analysis and forecast means, RMSE, spread and the truth's PIT."""
    a = np.asarray(result.analysis)
    sd = _dims(a.shape[1:], "state")
    data = {"analysis": (("cycle", *sd), a), "forecast": (("cycle", *sd), np.asarray(result.forecast)),
            "pit": (("cycle", *sd), np.asarray(result.pit))}
    for k in ("rmse_a", "rmse_f", "spread_a", "spread_f"):
        data[k] = (("cycle",), np.asarray(getattr(result, k)))
    return xr.Dataset(data, coords={"cycle": np.arange(1, a.shape[0] + 1)},
                      attrs={"schema": METHOD_SCHEMA, "code_version": __version__, **_json(attrs),
                             "summary": _json(summary)})


def _json(d):
    return json.loads(json.dumps(d, default=str))


def write_whole(ds: xr.Dataset, path: str) -> str:
    """Write ``ds`` to ``path`` (a Zarr store) through a temporary sibling folder and an
    atomic rename; an existing store at ``path`` is replaced."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    try:
        ds.to_zarr(tmp, mode="w", consolidated=False)
        if os.path.exists(path):
            old = f"{path}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_store(path: str, schema: str, identity: dict | None = None) -> xr.Dataset | None:
    """The store at ``path`` loaded, or None when there is none, it is of another schema,
    or its attributes differ from ``identity`` (then it must be recomputed)."""
    if not os.path.exists(path):
        return None
    try:
        ds = xr.open_zarr(path, consolidated=False).load()
    except Exception:  # noqa: BLE001  (unreadable: recompute)
        return None
    if ds.attrs.get("schema") != schema:
        return None
    if identity and any(ds.attrs.get(k) != v for k, v in _json(identity).items()):
        return None
    return ds
