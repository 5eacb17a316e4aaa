"""One-file containers: a JSON header line followed by ``eqx.tree_serialise_leaves`` bytes.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a
reader sees either the previous file or the new one, never a torn write.
"""

from __future__ import annotations

import io
import json
import os
import tempfile

import equinox as eqx

MAGIC = b"VARDAX-BLOB\n"


def write_blob(path: str, tree, header: dict, *, kind: str, version: int) -> None:
    head = json.dumps({"kind": kind, "version": version, **header}, sort_keys=True).encode()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + head + b"\n")
            eqx.tree_serialise_leaves(f, tree)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_header(path: str, *, kind: str, version: int) -> tuple[dict, int]:
    """The header of a blob (checked for ``kind`` and ``version``) and the offset of its leaves."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file at {path!r}")
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        line = f.readline()
        offset = f.tell()
    if magic != MAGIC:
        raise ValueError(f"{path!r} is not a vardax_core model/checkpoint file (bad magic bytes)")
    try:
        header = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} has a corrupt header: {e}") from None
    if header.get("kind") != kind:
        raise ValueError(f"{path!r} holds a {header.get('kind')!r}, expected a {kind!r}")
    if header.get("version") != version:
        raise ValueError(
            f"{path!r} has {kind} format version {header.get('version')!r}; this code reads version {version}"
        )
    return header, offset


def read_blob(path: str, like, *, kind: str, version: int):
    """``(header, tree)`` with the leaves deserialised into the skeleton ``like``."""
    header, offset = read_header(path, kind=kind, version=version)
    with open(path, "rb") as f:
        f.seek(offset)
        data = io.BytesIO(f.read())
    try:
        tree = eqx.tree_deserialise_leaves(data, like)
    except Exception as e:  # shape/dtype/type mismatch, truncated file
        raise ValueError(f"{path!r}: the stored weights do not fit the model its config describes ({e})") from None
    if data.read(1):
        raise ValueError(f"{path!r}: the stored weights do not fit the model its config describes (extra bytes)")
    return header, tree
