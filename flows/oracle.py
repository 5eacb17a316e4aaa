"""Step flow ``oracle-solve``: 4DVar + Laplace posteriors of the held-out events, and
with ``oracle.reference`` their exact posteriors by MCMC.

The oracle store is split into chunks solved as independent tasks on the flow's task
runner (threads by default, a Dask cluster with ``dask_address``); each task writes its
own region of one Zarr store. A rerun skips finished chunks, and an unchanged config
is served from the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import numpy as np
from prefect import flow, get_run_logger, task

from .config import PipelineConfig, load_config
from .refs import DatasetRef
from .runners import chunk_runner, run_chunks
from .simulate import problem_dir


def build_solver(config: PipelineConfig):
    """The config's 4DVar solver (``OracleSpec.solver_instance``)."""
    return config.oracle.solver_instance()


def oracle_path(config: PipelineConfig, heldout: DatasetRef) -> str:
    # keyed on the resolved solver settings (defaults included), not just the config text
    solver = json.dumps(build_solver(config).config(), sort_keys=True)
    ref = config.oracle.reference_config()
    reference = "" if ref is None else "|" + json.dumps({**ref.to_dict(), "seed": config.oracle.reference_seed},
                                                         sort_keys=True)
    key = hashlib.sha256(f"{heldout.hash}|{config.oracle.chunk_size}|{solver}{reference}".encode()).hexdigest()[:12]
    return str(problem_dir(config) / f"oracle-{key}.zarr")


@functools.lru_cache(maxsize=4)
def _writer(config_json: str, heldout_json: str):
    """One writer per process (workers in other processes build their own)."""
    from vardax_core.oracle import OracleStoreWriter

    from .config import PipelineConfig

    config = PipelineConfig.model_validate_json(config_json)
    heldout = DatasetRef.model_validate_json(heldout_json)
    return OracleStoreWriter(
        config.problem.build(), heldout.path, oracle_path(config, heldout), solver=build_solver(config),
        chunk_size=config.oracle.chunk_size, pairs_hash=heldout.hash,
        reference=config.oracle.reference_config(), reference_seed=config.oracle.reference_seed,
    )


@task(name="solve-chunk", retries=1, retry_delay_seconds=2)
def solve_chunk_task(config_json: str, heldout_json: str, chunk: int) -> int:
    _writer(config_json, heldout_json).process_chunk(chunk)
    return chunk


@task(name="oracle-store")
def finalize_task(path: str, n_events: int) -> DatasetRef:
    from vardax_core.data import dataset_hash

    return DatasetRef(kind="oracle", path=path, hash=dataset_hash(path), n_events=n_events)


@flow(name="oracle-solve", log_prints=True)
def oracle_solve(config: PipelineConfig, heldout: DatasetRef, dask_address: str | None = None) -> DatasetRef:
    """Solve every held-out event with the configured 4DVar solver (chunks in parallel).

    The store path is keyed on the held-out store's hash and the oracle settings; its
    per-chunk flags are the cache: a rerun solves only missing chunks (none when the
    config is unchanged, and the returned reference is marked ``cached``)."""
    from vardax_core.oracle import open_oracle

    logger = get_run_logger()
    path = oracle_path(config, heldout)
    cfg_json, ref_json = config.model_dump_json(), heldout.model_dump_json(exclude={"cached"})
    writer = _writer(cfg_json, ref_json)  # creates the store once, before any worker starts
    pending = writer.pending_chunks()
    if pending:
        logger.info("solving %d held-out events in %d chunk(s) with %s 4DVar -> %s",
                    heldout.n_events, len(pending), config.oracle.solver, path)
        runner = chunk_runner(config.oracle.workers, dask_address)
        _solve_chunks.with_options(task_runner=runner)(cfg_json, ref_json, pending)
    else:
        logger.info("oracle store %s is complete: nothing to solve", path)
    ref = finalize_task(path, heldout.n_events).model_copy(update={"cached": not pending})
    ds = open_oracle(path)
    conv = np.asarray(ds["converged"].values)
    logger.info("oracle: %d/%d events converged", int(conv.sum()), conv.size)
    if "ref_mixed" in ds:
        mixed, lap = np.asarray(ds["ref_mixed"].values), np.asarray(ds["ref_laplace_ok"].values)
        logger.info("reference posterior (MCMC): %d/%d events mixed; the Laplace posterior holds on %d",
                    int(mixed.sum()), mixed.size, int(lap.sum()))
    return ref


@flow(name="oracle-solve-chunks", log_prints=True)
def _solve_chunks(config_json: str, heldout_json: str, chunks: list[int]) -> list[int]:
    return run_chunks(solve_chunk_task, chunks, config_json=config_json, heldout_json=heldout_json)


if __name__ == "__main__":
    import sys

    from .simulate import simulate_pairs

    cfg = load_config(sys.argv[1] if len(sys.argv) > 1 else "lorenz96")
    print(oracle_solve(cfg, simulate_pairs(cfg, ("heldout",))["heldout"]))
