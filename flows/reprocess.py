"""Flow ``reprocess-catalogue``: run the champion over a catalogue of observed events.

The champion (``models:/<name>@champion``) is loaded once; the catalogue is validated
against the champion's problem configuration before anything is written; analyses go to
``<store_root>/analyses/<catalogue>-<hash>/<model>-v<version>.zarr``. A catalogue the
same version already processed is skipped; a new champion writes a new versioned store.
Chunks run as tasks on the flow's task runner (threads, or a Dask cluster by address).
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

from prefect import flow, get_run_logger, task
from pydantic import BaseModel

from . import tracking
from .config import PipelineConfig, load_config, vardax_home
from .progress import Progress
from .runners import chunk_runner, run_chunks


class AnalysesRef(BaseModel):
    path: str
    hash: str
    n_events: int
    model_name: str
    model_version: str
    catalogue_hash: str
    skipped: bool


class _Job(BaseModel):
    """Everything a worker process needs to rebuild the writer."""

    tracking_uri: str
    model_uri: str
    model_name: str
    model_version: str
    run_id: str
    catalogue: str
    out_path: str
    quantiles: list[float]
    n_samples: int
    chunk_size: int | None
    seed: int
    catalogue_hash: str
    #: unique per flow run: a writer cached by an earlier run (in this process or a task
    #: worker's) is never reused — its store may since have been deleted or replaced
    run_token: str


@functools.lru_cache(maxsize=2)
def _writer(job_json: str):
    import mlflow

    from vardax_core.data import AnalysesWriter
    from vardax_core.problems import problem_from_config

    job = _Job.model_validate_json(job_json)
    mlflow.set_tracking_uri(job.tracking_uri)
    posterior = tracking.load_posterior(job.model_uri)
    problem = problem_from_config(posterior.config["problem"])
    return AnalysesWriter(
        posterior, problem, job.catalogue, job.out_path,
        provenance={"model_name": job.model_name, "model_version": job.model_version, "run_id": job.run_id,
                    "model_uri": job.model_uri},
        quantiles=job.quantiles, n_samples=job.n_samples, chunk_size=job.chunk_size, seed=job.seed,
        catalogue_hash=job.catalogue_hash,  # hashed once by the flow, not again per writer/worker
    )


@task(name="analyse-chunk", retries=1, retry_delay_seconds=2)
def analyse_chunk_task(job_json: str, chunk: int) -> int:
    _writer(job_json).process_chunk(chunk)
    return chunk


@flow(name="reprocess-chunks", log_prints=True)
def _analyse_chunks(job_json: str, chunks: list[int]) -> list[int]:
    return run_chunks(analyse_chunk_task, chunks, job_json=job_json)


def default_catalogue(config: PipelineConfig) -> str:
    return str(vardax_home() / "catalogues" / f"{config.problem.name}.zarr")


def analyses_path(config: PipelineConfig, catalogue: str, catalogue_hash: str, version: str) -> str:
    stem = Path(catalogue.rstrip("/")).name.removesuffix(".zarr")
    return str(Path(config.resolved_store_root()) / "analyses" / f"{stem}-{catalogue_hash}"
               / f"{config.registered_model_name()}-v{version}.zarr")


@flow(name="reprocess-catalogue", log_prints=True)
def reprocess_catalogue(
    catalogue: str | None = None,
    config: PipelineConfig | None = None,
    quantiles: list[float] = [0.05, 0.5, 0.95],  # noqa: B006 (a Prefect parameter default)
    n_samples: int = 0,
    chunk_size: int | None = None,
    seed: int = 0,
    dask_address: str | None = None,
    workers: int = 1,
) -> AnalysesRef:
    """Reprocess ``catalogue`` (default ``$VARDAX_HOME/catalogues/<problem>.zarr``) with the
    champion of ``config``'s registered model (default config: ``configs/lorenz96.yaml``)."""
    from vardax_core.data import dataset_hash, open_analyses, open_catalogue, store_lock
    from vardax_core.problems import problem_from_config

    logger = get_run_logger()
    config = config or load_config("lorenz96")
    catalogue = catalogue or default_catalogue(config)
    client = tracking.configure(config)
    name = config.registered_model_name()
    version = tracking.current_alias(client, name, tracking.CHAMPION)
    if version is None:
        raise ValueError(f"registered model {name!r} has no champion yet: run the six-step cycle first")
    mv = client.get_model_version(name, version)
    why = tracking.head_verdict_problems(mv.tags, config.problem.build().hash)
    if why:
        raise ValueError(f"champion {version} of {name!r} has no current passing verdict, so it is not reprocessed: "
                         f"{'; '.join(why)} (re-gate it with `vardax gates --version {version}`)")
    posterior = tracking.load_posterior(mv.source)
    # refuse a mismatched or malformed catalogue before anything is written
    open_catalogue(catalogue, problem_from_config(posterior.config["problem"]))
    cat_hash = dataset_hash(catalogue)
    out = analyses_path(config, catalogue, cat_hash, version)
    job = _Job(tracking_uri=config.tracking_uri(), model_uri=mv.source, model_name=name, model_version=version,
               run_id=mv.run_id, catalogue=catalogue, out_path=out, quantiles=list(quantiles),
               n_samples=n_samples, chunk_size=chunk_size, seed=seed, catalogue_hash=cat_hash,
               run_token=uuid.uuid4().hex).model_dump_json()
    # one writer per analyses store: a second run of the same champion over the same
    # catalogue (an overlapping nightly, a manual run) stops here, before writing
    with store_lock(out, "analyses store"):
        writer = _writer(job)
        pending = writer.pending_chunks()
        if not pending:
            logger.info("catalogue %s already processed by %s v%s: %s", catalogue, name, version, out)
        elif dask_address or workers > 1:
            logger.info("reprocessing %d chunk(s) of %s with %s v%s on %s", len(pending), catalogue, name, version,
                        dask_address or f"{workers} threads")
            _analyse_chunks.with_options(task_runner=chunk_runner(workers, dask_address))(job, pending)
        else:  # in this process, one chunk after another: bounded memory, no task overhead
            logger.info("reprocessing %d chunk(s) of %s with %s v%s", len(pending), catalogue, name, version)
            writer.run(progress=Progress("reprocess", f"Reprocessing {Path(catalogue).name}").update)
    ds = open_analyses(out)
    return AnalysesRef(path=out, hash=dataset_hash(out), n_events=int(ds.sizes["event"]), model_name=name,
                       model_version=version, catalogue_hash=cat_hash, skipped=not pending)


if __name__ == "__main__":
    import sys

    print(reprocess_catalogue(sys.argv[1] if len(sys.argv) > 1 else None,
                              load_config(sys.argv[2]) if len(sys.argv) > 2 else None))
