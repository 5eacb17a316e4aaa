"""Steps 3–4 as flows: ``train-emulator`` and the emulator-based oracle ``emulator-oracle``.

``train-emulator`` (one MLflow run per trained emulator):

1. ``fit-emulator``: ``vardax_core.emulator.build_emulator`` + ``fit_emulator`` with the
   config's ``emulator`` section; the run records the architecture, training settings
   and seed as params, the per-epoch metrics, the saved emulator as a ``pyfunc`` model;
   the model becomes a new version of ``vardax-<problem>-emulator`` (alias ``challenger``).
2. ``gate-emulator``: the forward (0.01) and Jacobian (0.05) gates on fresh held-out
   states; statistics as ``gate.*`` metrics of the run, the results as
   ``gates/emulator.json``, each outcome as a version tag (``gate.emulator_forward``,
   ``gate.emulator_jacobian``, ``gates_passed``), a Prefect markdown artifact.
3. promotion by the heads' rule (``flows.promote.challenge``): the ``champion`` alias
   moves to this version only when both gates passed (re-checked on the registry's
   tags) and its forward error is no worse than the champion's under the same gate
   settings (``gate_settings`` tag); otherwise it stays where it is.

``emulator-oracle`` (the cycle's optional step 4): the oracle's own solver and Laplace
posterior on the held-out events with ``forward=emulator``, gated against the physics
oracle store (``vardax_core.emulator.emulator_agreement_from_oracle``: within 1σ on
≥ 95 % of events); recorded on the emulator's run and version
(``gate.emulator_agreement`` tag). Promotion stays the two emulator gates' decision
(issue 8); the agreement outcome is reported next to it.

``simulate-emulator-pairs`` (the cycle, with ``emulator.train_pairs``): the heads'
training pairs simulated with a gated emulator version instead of the physics; the heads
trained on them are gated against the physics oracle as usual.

All numerics are in ``vardax_core.emulator``; each task is cached on its inputs'
hashes, and refreshed when its MLflow record is gone.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict

from . import tracking
from .caching import keyed_task_options, store_complete
from .config import EmulatorSpec, PipelineConfig, load_config
from .gates import gate_statistics
from .progress import Progress
from .refs import DatasetRef, ModelRef, resolve

#: ``head_name`` / ``head_type`` of an emulator's :class:`ModelRef`.
EMULATOR_NAME = "emulator"
AGREEMENT_TAG = f"{tracking.GATE_TAG_PREFIX}emulator_agreement"


class EmulatorOutcome(BaseModel):
    """The emulator gates of one registered emulator version, and the champion after it."""

    model_config = ConfigDict(frozen=True)

    model: ModelRef
    passed: bool
    gates: dict[str, bool]
    statistics: dict[str, float]
    report_json: str
    champion: str | None = None
    cached: bool = False


class EmulatorAgreement(BaseModel):
    """Step 4's gate: the emulator-based oracle against the physics oracle."""

    model_config = ConfigDict(frozen=True)

    model: ModelRef
    oracle_hash: str
    passed: bool
    statistic: float
    threshold: float
    n_events: int
    statistics: dict[str, float]
    gate_json: str
    cached: bool = False


def _spec(config: PipelineConfig) -> EmulatorSpec:
    return config.emulator or EmulatorSpec()


def _hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def load_emulator_version(model_uri: str):
    """The ``vardax_core`` emulator inside a logged emulator pyfunc model."""
    return tracking.load_model_object(model_uri)


# ---- 1. training ---------------------------------------------------------------------------

def train_key(config: PipelineConfig) -> str:
    spec = _spec(config)
    return _hash({"model": spec.model.settings(), "train": spec.train.settings(), "seed": spec.seed,
                  "problem": config.problem.build().hash, "registered_model": config.emulator_model_name(),
                  "tracking": config.tracking_uri()})


def _register(client: MlflowClient, config: PipelineConfig, model_uri: str, run_id: str, tags: dict) -> str:
    """A new version of the emulator registered model, tagged, aliased ``challenger``."""
    return tracking.register_model_version(
        client, config.emulator_model_name(), f"neural emulators of {config.problem.name}'s forward model",
        model_uri, run_id, tags,
    )


@task(name="fit-emulator", persist_result=True)
def fit_emulator_task(config: PipelineConfig, key: str) -> ModelRef:
    import jax

    from vardax_core.emulator import build_emulator, fit_emulator, save_emulator

    logger = get_run_logger()
    client = tracking.configure(config)
    spec = _spec(config)
    problem = config.problem.build()
    train_cfg = spec.train.core()
    emulator = build_emulator(problem, spec.model.settings(), jax.random.key(spec.seed))
    arch = {k: v for k, v in emulator.config.items() if k not in ("problem", "problem_hash", "state_shape")}
    progress = Progress("train-emulator", f"Training the {problem.name} emulator")
    with tracking.training_run(config, f"emulator-{problem.name}") as run:
        mlflow.set_tags({"kind": "emulator", "problem": problem.name, "train_key": key})
        mlflow.log_params(tracking.flat_params("", {"model": arch, "train": train_cfg.to_dict(), "seed": spec.seed,
                                                   "problem": problem.config}))

        def on_epoch(epoch, metrics):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, step=int(epoch))
            progress.update(int(epoch) + 1, train_cfg.max_epochs)

        logger.info("training the %s emulator (%s)", problem.name, arch)
        with tracking.artifacts_tmpdir() as tmp:
            emulator, history = fit_emulator(emulator, problem, config=train_cfg, seed=spec.seed,
                                             checkpoint_dir=str(Path(tmp) / "checkpoints"), callback=on_epoch,
                                             progress=False)
            mlflow.log_metrics({"best_epoch": float(history["best_epoch"]), "best_val_loss": history["best_val_loss"],
                                "n_train_pairs": float(history["n_train"]), "train_seconds": history["seconds"]})
            path = Path(tmp) / "emulator.vdx"
            save_emulator(str(path), emulator)
            model_uri = tracking.log_pyfunc("emulator", str(path), problem)
    tags = {"kind": "emulator", "head_name": EMULATOR_NAME, "head_type": emulator.config["type"],
            "problem": problem.name, "problem_hash": problem.hash, "train_key": key, "gates_passed": "pending"}
    version = _register(client, config, model_uri, run.info.run_id, tags)
    logger.info("registered %s version %s (challenger)", config.emulator_model_name(), version)
    return ModelRef(name=config.emulator_model_name(), version=version, run_id=run.info.run_id, model_uri=model_uri,
                    head_name=EMULATOR_NAME, head_type=tags["head_type"])


# ---- 2. the emulator gates -----------------------------------------------------------------

def gates_key(config: PipelineConfig, model: ModelRef) -> str:
    spec = _spec(config)
    return _hash({"model": model.model_dump(mode="json", exclude={"cached"}), "gates": spec.gates.settings(),
                  "gate_seed": spec.gate_seed})


def _markdown(title: str, results) -> str:
    lines = [f"### {title}", "", "| gate | result | statistic | threshold | rule |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {'pass' if r.passed else '**FAIL**'} | {r.statistic:.4g} | {r.threshold:g} | "
                     f"{r.details.get('rule', '')} |")
    lines += [""] + [f"- {r.name}: {r.details['summary']}" for r in results if r.details.get("summary")]
    lines += [f"- {r.name} failed: {r.reason}" for r in results if r.reason]
    return "\n".join(lines)


def _artifact_key(prefix: str, model: ModelRef) -> str:
    return f"{prefix}-{model.name}-v{model.version}".lower().replace("_", "-").replace(".", "-")


def _finite(stats: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in stats.items() if v == v and abs(v) != float("inf")}


@task(name="gate-emulator", persist_result=True)
def gate_emulator_task(config: PipelineConfig, model: ModelRef) -> EmulatorOutcome:
    import jax

    from vardax_core.emulator import emulator_gates, emulator_gates_passed
    from vardax_core.gates import GateReport

    logger = get_run_logger()
    client = tracking.configure(config)
    spec = _spec(config)
    problem = config.problem.build()
    emulator = load_emulator_version(model.model_uri)
    gate_cfg = spec.gates.core()
    results = emulator_gates(emulator, problem, jax.random.key(spec.gate_seed), gate_cfg)
    report = GateReport(tuple(results.values()), config=gate_cfg.to_dict(), meta={"model": model.name,
                                                                               "version": model.version})
    stats = gate_statistics(report)
    with mlflow.start_run(run_id=model.run_id):
        mlflow.log_metrics({f"gate.{k}": v for k, v in _finite(stats).items()})
        mlflow.log_text(report.to_json(indent=2), "gates/emulator.json")
    gates = {name: bool(r.passed) for name, r in results.items()}
    tracking.tag_gate_outcomes(client, model, gates)
    # what the forward error was measured under: promotion compares versions only on the same
    client.set_model_version_tag(model.name, model.version, "gate_settings",
                                 _hash({"gates": spec.gates.settings(), "gate_seed": spec.gate_seed}))
    create_markdown_artifact(key=_artifact_key("gates", model), markdown=_markdown(
        f"{model.name} v{model.version}: emulator gates", results.values()),
        description=f"emulator gates of {model.name} version {model.version}")
    logger.info("emulator gates of v%s: %s", model.version,
                ", ".join(f"{k}={'pass' if v else 'FAIL'} ({results[k].statistic:.4g})" for k, v in gates.items()))
    return EmulatorOutcome(model=model, passed=emulator_gates_passed(results), gates=gates, statistics=stats,
                           report_json=report.to_json())


# ---- 3. promotion --------------------------------------------------------------------------

def promote_emulator(config: PipelineConfig, outcome: EmulatorOutcome, force: bool = False) -> str | None:
    """The emulator's ``champion`` moves by the heads' rule (``flows.promote.challenge``):
    both gates passed (re-read from the registry), and at least as good as the incumbent
    on the forward gate's error (``gate.emulator_forward.statistic``, lower is better)
    measured under the same gate settings (``gate_settings`` tag). Returns the champion."""
    from vardax_core.emulator import FORWARD

    from .promote import challenge

    logger = get_run_logger()
    client = tracking.configure(config)
    name, version = outcome.model.name, outcome.model.version
    if not outcome.passed:
        failed = [g for g, ok in outcome.gates.items() if not ok]
        previous = tracking.current_alias(client, name, tracking.CHAMPION)
        logger.warning("emulator v%s failed %s; champion of %s stays at %s", version, failed, name, previous)
        return previous
    result = challenge(client, name, version, quality=f"gate.{FORWARD}.statistic", measured_on="gate_settings",
                       force=force, head=False)
    logger.info("champion of %s: %s -> %s (%s)", name, result.previous, result.champion, result.reason)
    return result.champion


@flow(name="train-emulator", log_prints=True)
def train_emulator(config: PipelineConfig) -> EmulatorOutcome:
    """Train the emulator of the config's ``emulator`` section (defaults without one),
    register it, gate it (forward and Jacobian) and move ``champion`` to it only when
    both gates passed. Cached on (emulator settings, problem, registry): rerunning an
    unchanged config returns the registered, gated version without retraining."""
    client = tracking.configure(config)
    name = config.emulator_model_name()
    key = train_key(config)
    valid = tracking.find_version(client, name, "train_key", key) is not None
    model = resolve(fit_emulator_task.with_options(**keyed_task_options(key, valid))(config, key, return_state=True))
    mv = client.get_model_version(model.name, model.version)
    valid = mv.tags.get("gates_passed") in ("true", "false")
    opts = keyed_task_options(gates_key(config, model), valid)
    outcome = resolve(gate_emulator_task.with_options(**opts)(config, model, return_state=True))
    champion = promote_emulator(config, outcome)
    return outcome.model_copy(update={"champion": champion, "model": model})


# ---- 4. the emulator-based oracle --------------------------------------------------------------

def _agreement_config(config: PipelineConfig) -> dict:
    spec = _spec(config)
    return (spec.agreement if spec.agreement is not None else config.gates.settings).settings()


def agreement_key(config: PipelineConfig, model: ModelRef, oracle: DatasetRef) -> str:
    from .oracle import build_solver

    return _hash({"model": model.model_dump(mode="json", exclude={"cached"}), "oracle": oracle.hash,
                  "agreement": _agreement_config(config), "solver": build_solver(config).config()})


@task(name="emulator-agreement", persist_result=True)
def emulator_agreement_task(config: PipelineConfig, model: ModelRef, oracle: DatasetRef) -> EmulatorAgreement:
    from vardax_core.emulator import emulator_agreement_from_oracle
    from vardax_core.gates import GateConfig
    from vardax_core.oracle import OracleAnalysis, open_oracle

    from .oracle import build_solver

    logger = get_run_logger()
    client = tracking.configure(config)
    problem = config.problem.build()
    emulator = load_emulator_version(model.model_uri)
    analysis = OracleAnalysis(build_solver(config))  # the physics oracle's solver, unchanged
    gate_cfg = GateConfig.from_dict(_agreement_config(config))
    logger.info("emulator-based %s 4DVar on the held-out events of %s", config.oracle.solver, oracle.path)
    gate, _, _ = emulator_agreement_from_oracle(emulator, problem, open_oracle(oracle.path, problem),
                                                analysis=analysis, config=gate_cfg)
    stats = {f"{gate.name}.statistic": float(gate.statistic), f"{gate.name}.threshold": float(gate.threshold),
             f"{gate.name}.passed": float(gate.passed)}
    stats.update({f"{gate.name}.{k}": float(v) for k, v in gate.details.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)})
    solver = gate.details.get("emulator_solver", {})
    stats.update({f"{gate.name}.solver.{k}": float(v) for k, v in solver.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)})
    with mlflow.start_run(run_id=model.run_id):
        mlflow.log_metrics({f"gate.{k}": v for k, v in _finite(stats).items()})
        mlflow.log_text(gate.to_json(), "gates/emulator_agreement.json")
    client.set_model_version_tag(model.name, model.version, AGREEMENT_TAG, "passed" if gate.passed else "failed")
    client.set_model_version_tag(model.name, model.version, "oracle_hash", oracle.hash)
    create_markdown_artifact(key=_artifact_key("agreement", model), markdown=_markdown(
        f"{model.name} v{model.version}: emulator-based 4DVar against the physics oracle", [gate]),
        description=f"emulator-based oracle of {model.name} version {model.version}")
    n = int(gate.details.get("n_events", 0))
    logger.info("emulator-based oracle of v%s: %s (%.3f of %d events within %g sigma)", model.version,
                "pass" if gate.passed else "FAIL", gate.statistic, n, gate_cfg.tolerance_sigma)
    return EmulatorAgreement(model=model, oracle_hash=oracle.hash, passed=bool(gate.passed),
                             statistic=float(gate.statistic), threshold=float(gate.threshold), n_events=n,
                             statistics=stats, gate_json=gate.to_json())


@flow(name="emulator-oracle", log_prints=True)
def emulator_oracle(config: PipelineConfig, model: ModelRef, oracle: DatasetRef) -> EmulatorAgreement:
    """Step 4: the oracle's 4DVar with ``forward=emulator`` on the held-out events of
    ``oracle``, gated against the physics oracle's posteriors. Cached on (version,
    oracle store, agreement settings, solver) while the version carries its tag."""
    client = tracking.configure(config)
    valid = AGREEMENT_TAG in client.get_model_version(model.name, model.version).tags
    opts = keyed_task_options(agreement_key(config, model, oracle), valid)
    return resolve(emulator_agreement_task.with_options(**opts)(config, model, oracle, return_state=True))


# ---- 5. training pairs from the emulator (step 3 feeding step 5) ----------------------------------

def emulator_pairs_path(config: PipelineConfig, model: ModelRef) -> tuple[str, int, int]:
    """Location, size and seed of the emulated training pairs of an emulator version: the
    physics training pairs' size and seed, a store of its own per version."""
    from .simulate import pairs_path

    path, n, seed = pairs_path(config, "train")
    tag = _hash({"name": model.name, "version": model.version, "run_id": model.run_id})[:12]
    p = Path(path)
    return str(p.with_name(f"{p.stem}-emulator-v{model.version}-{tag}.zarr")), n, seed


@task(name="write-emulator-pairs", retries=1, retry_delay_seconds=2, persist_result=True)
def write_emulator_pairs_task(config: PipelineConfig, model: ModelRef) -> DatasetRef:
    from vardax_core.data import dataset_hash
    from vardax_core.emulator import write_emulated_pairs

    logger = get_run_logger()
    path, n, seed = emulator_pairs_path(config, model)
    problem = config.problem.build()
    emulator = load_emulator_version(model.model_uri)
    logger.info("simulating %d training pairs of %s with %s v%s (seed %d) into %s", n, problem.name, model.name,
                model.version, seed, path)
    progress = Progress("simulate-emulator-pairs", "Simulating training pairs with the emulator")
    write_emulated_pairs(problem, emulator, path, n, seed, chunk_size=config.data.chunk_size,
                         progress=progress.update, attrs={"emulator_model": model.name,
                                                          "emulator_version": model.version,
                                                          "emulator_run_id": model.run_id})
    return DatasetRef(kind="pairs-train-emulator", path=path, hash=dataset_hash(path), n_events=n)


@flow(name="simulate-emulator-pairs", log_prints=True)
def simulate_emulator_pairs(config: PipelineConfig, model: ModelRef) -> DatasetRef:
    """The heads' training pairs simulated with the emulator version ``model`` in place of
    the physics (``vardax_core.emulator.write_emulated_pairs``). Cached on (version,
    problem, size, seed) while the store is complete; resumable."""
    path, n, seed = emulator_pairs_path(config, model)
    key = _hash({"pairs": "emulator", "problem": config.problem.build().hash, "path": path, "n": n, "seed": seed,
                 "model": model.model_dump(mode="json", exclude={"cached"})})
    opts = keyed_task_options(key, valid=store_complete(path))
    return resolve(write_emulator_pairs_task.with_options(**opts)(config, model, return_state=True))


if __name__ == "__main__":
    import sys

    print(train_emulator(load_config(sys.argv[1] if len(sys.argv) > 1 else "lorenz96")).model_dump_json(indent=2))
