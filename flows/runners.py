"""Task runners for chunk-parallel steps: threads here, or a Dask cluster by address.

``oracle-solve`` and ``reprocess-catalogue`` split their work into store chunks, each
an independent task that writes its own Zarr region; the runner decides where those
tasks run. With ``dask_address`` (``tcp://host:8786``) they run on an existing Dask
cluster through ``prefect-dask``; workers must see the same store root (a shared
filesystem or an fsspec URL) and have this package installed.
"""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner


def chunk_runner(workers: int = 2, dask_address: str | None = None):
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=max(1, int(workers)))


def run_chunks(task, chunks: list[int], **kwargs) -> list:
    """Submit ``task(chunk=c, **kwargs)`` for every chunk and wait; failures raise."""
    futures = [task.submit(chunk=c, **kwargs) for c in chunks]
    return [f.result() for f in futures]
