"""Step flow ``simulate-pairs``: training pairs and held-out events as Zarr stores."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect import flow, get_run_logger, task

from .caching import keyed_task_options, store_complete
from .config import PipelineConfig, load_config
from .progress import Progress
from .refs import DatasetRef, resolve


def problem_dir(config: PipelineConfig) -> Path:
    problem = config.problem.build()
    return Path(config.resolved_store_root()) / f"{problem.name}-{problem.hash}"


def pairs_path(config: PipelineConfig, split: str) -> tuple[str, int, int]:
    """Location, size and seed of a split's store (held-out events use their own seed)."""
    d = config.data
    seed = d.seed if split == "train" else d.seed + 1_000_003
    n = d.n_train if split == "train" else d.n_heldout
    return str(problem_dir(config) / f"pairs-{split}-n{n}-seed{seed}.zarr"), n, seed


@task(name="write-pairs", retries=1, retry_delay_seconds=2, persist_result=True)
def write_pairs_task(config: PipelineConfig, split: str) -> DatasetRef:
    from vardax_core.data import dataset_hash, write_pairs

    path, n, seed = pairs_path(config, split)
    problem = config.problem.build()
    logger = get_run_logger()
    logger.info("simulating %d %s pairs of %s (seed %d) into %s", n, split, problem.name, seed, path)
    progress = Progress(f"simulate-{split}", f"Simulating {split} pairs")
    write_pairs(problem, path, n, seed, chunk_size=config.data.chunk_size, progress=progress.update)
    ref = DatasetRef(kind=f"pairs-{split}", path=path, hash=dataset_hash(path), n_events=n)
    logger.info("wrote %s (hash %s)", path, ref.hash)
    return ref


def _pairs_key(config: PipelineConfig, split: str) -> str:
    path, n, seed = pairs_path(config, split)
    return hashlib.sha256(f"pairs|{config.problem.build().hash}|{split}|{n}|{seed}|{path}".encode()).hexdigest()


@flow(name="simulate-pairs", log_prints=True)
def simulate_pairs(config: PipelineConfig, splits: tuple[str, ...] = ("train", "heldout")) -> dict[str, DatasetRef]:
    """Simulate the training pairs and the held-out events of ``config`` (``splits``:
    which of the two).

    Each store is keyed by problem hash, size and seed: a rerun with the same config is
    served from the cache (and the writers are resumable, so an interrupted run finishes
    the missing chunks).
    """
    unknown = set(splits) - {"train", "heldout"}
    if unknown or not splits:
        raise ValueError(f"simulate_pairs: `splits` must be a non-empty subset of ('train', 'heldout'), got {splits}")
    refs = {}
    for split in splits:
        path, _, _ = pairs_path(config, split)
        opts = keyed_task_options(_pairs_key(config, split), valid=store_complete(path))
        refs[split] = resolve(write_pairs_task.with_options(**opts)(config, split, return_state=True))
    return refs


if __name__ == "__main__":
    import sys

    simulate_pairs(load_config(sys.argv[1] if len(sys.argv) > 1 else "lorenz96"))
