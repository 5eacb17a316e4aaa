"""Step flow ``train-head``: train one amortized head in an MLflow run and register it,
on the ``pairs-train`` store or (``simulate`` in the head spec) on fresh simulated pairs.

The run records the head's parameters, per-epoch metrics, the pairs and oracle stores
as dataset inputs (lineage) and the model as a ``pyfunc``; the model becomes a new
version of the problem's registered model, tagged and aliased ``challenger``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task

from . import tracking
from .caching import keyed_task_options
from .config import HeadSpec, PipelineConfig
from .progress import Progress
from .refs import DatasetRef, ModelRef, resolve


def pairs_provenance(pairs: DatasetRef) -> dict[str, str]:
    """Tags saying what simulated a head's training pairs: ``pairs_forward`` (``physics`` or
    ``emulator``) and, for emulated pairs, ``pairs_emulator`` (``<model>/<version>``)."""
    import zarr

    attrs = zarr.open_group(store=pairs.path, mode="r").attrs
    tags = {"pairs_forward": str(attrs.get("forward", "physics"))}
    if tags["pairs_forward"] == "emulator":
        tags["pairs_emulator"] = f"{attrs.get('emulator_model', '?')}/{attrs.get('emulator_version', '?')}"
    return tags


def model_config(head: HeadSpec) -> dict:
    """The ``vardax_core.amortized.build_posterior`` config of a head spec."""
    return head.model_config_dict()


def train_key(config: PipelineConfig, head: HeadSpec, pairs: DatasetRef, oracle: DatasetRef) -> str:
    payload = {
        "head": head.model_dump(mode="json"),
        "pairs": pairs.hash,
        "oracle": oracle.hash,
        "problem": config.problem.build().hash,
        "model": config.registered_model_name(),
        "tracking": config.tracking_uri(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@task(name="fit-head", persist_result=True)
def fit_head_task(config: PipelineConfig, head: HeadSpec, pairs: DatasetRef, oracle: DatasetRef, key: str) -> ModelRef:
    import jax

    from vardax_core.amortized import build_posterior, fit, fit_simulated, save_posterior

    logger = get_run_logger()
    client = tracking.configure(config)
    problem = config.problem.build()
    progress = Progress(f"train-{head.name}", f"Training head {head.name}")
    cfg = model_config(head)
    provenance = pairs_provenance(pairs) if head.simulate is None else {"pairs_forward": "physics",
                                                                       "pairs_source": "simulated on the fly"}
    with tracking.training_run(config, head.name) as run:
        mlflow.set_tags({"head_name": head.name, "head_type": head.type, "problem": problem.name, "train_key": key,
                         **provenance})
        mlflow.log_params(tracking.flat_params("", {"model": cfg, "train": head.train.settings(), "seed": head.seed,
                                                   "problem": problem.config}))
        if head.simulate is None:
            tracking.log_dataset_input(pairs, "training")
        else:
            mlflow.log_params(tracking.flat_params("simulate", head.simulate.settings()))
            if head.consistency is not None:
                mlflow.log_params(tracking.flat_params("consistency", head.consistency.settings()))
        tracking.log_dataset_input(oracle, "validation")
        posterior = build_posterior(problem, cfg, jax.random.key(head.seed))
        if head.simulate is None:
            max_epochs = head.train.max_epochs
        else:
            budget = head.simulate.core()
            max_epochs = max(1, budget.n_pairs // budget.epoch_pairs)

        def on_epoch(epoch, metrics):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, step=int(epoch))
            progress.update(int(epoch) + 1, max_epochs)

        with tracking.artifacts_tmpdir() as tmp:
            common = dict(config=head.train.core(), seed=head.seed, checkpoint_dir=str(Path(tmp) / "checkpoints"),
                          callback=on_epoch, progress=False)
            if head.simulate is None:
                logger.info("training %s (%s) on %s", head.name, head.type, pairs.path)
                posterior, history = fit(posterior, pairs.path, problem=problem, **common)
            else:
                logger.info("training %s (%s) on %d fresh simulated pairs", head.name, head.type, budget.n_pairs)
                consistency = head.consistency.core() if head.consistency is not None else None
                posterior, history = fit_simulated(posterior, problem, budget=budget, consistency=consistency,
                                                   **common)
            path = Path(tmp) / "posterior.vdx"
            save_posterior(str(path), posterior)
            model_uri = tracking.log_pyfunc("posterior", str(path), problem)
    tags = {
        "head_name": head.name, "head_type": head.type, "problem": problem.name, "problem_hash": problem.hash,
        "pairs_hash": pairs.hash if head.simulate is None else "simulated", "oracle_hash": oracle.hash,
        "train_key": key, "gates_passed": "pending",
        **provenance,
    }
    version = tracking.register_version(client, config, model_uri, run.info.run_id, tags)
    logger.info("registered %s version %s (challenger)", config.registered_model_name(), version)
    return ModelRef(name=config.registered_model_name(), version=version, run_id=run.info.run_id,
                    model_uri=model_uri, head_name=head.name, head_type=head.type)


@flow(name="train-head", log_prints=True)
def train_head(config: PipelineConfig, head: HeadSpec, pairs: DatasetRef, oracle: DatasetRef) -> ModelRef:
    """Train ``head`` on ``pairs``, log it to MLflow (with ``oracle`` as its validation
    input) and register it. Cached on (head spec, dataset hashes, problem, registry):
    rerunning an unchanged config returns the registered version without retraining."""
    key = train_key(config, head, pairs, oracle)
    client = tracking.configure(config)
    valid = tracking.find_version(client, config.registered_model_name(), "train_key", key) is not None
    return resolve(fit_head_task.with_options(**keyed_task_options(key, valid))(config, head, pairs, oracle, key,
                                                                                return_state=True))
