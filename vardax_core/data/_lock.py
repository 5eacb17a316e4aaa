"""An exclusive writer lock for a store: one writer at a time, the others stop at once.

``store_lock(path)`` holds an advisory ``flock`` on ``<path>.lock`` (a sibling file, so
the store itself is never touched) for the duration of a ``with`` block. A second writer
of the same store — another process, or another open in this one — gets
:class:`StoreBusy` naming who holds it, before it writes anything. The lock dies with
its holder (the kernel releases it), so a killed run never leaves the store locked; the
store stays resumable from its ``chunk_done`` flags. Paths with a URL scheme (``s3://``,
``gs://``, …) are not locked: there the scheduler's concurrency limit is the guard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


class StoreBusy(RuntimeError):
    """Another writer holds the store's lock."""


@contextlib.contextmanager
def store_lock(path: str, what: str = "store") -> Iterator[str | None]:
    """Hold the exclusive writer lock of the local store ``path`` (yields the lock file's
    path; None for a remote URL, which is not locked). Raises :class:`StoreBusy` when
    another writer holds it."""
    if "://" in str(path) and not str(path).startswith("file://"):
        yield None
        return
    local = Path(str(path).removeprefix("file://").rstrip("/"))
    local.parent.mkdir(parents=True, exist_ok=True)
    lock = local.with_name(local.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(lock).read_text() or "{}"
            raise StoreBusy(f"{what} {local} is being written by another run ({holder.strip()}); "
                            "this one stops without writing") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                 .encode())
        try:
            yield str(lock)
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
