"""Step flow ``validate-gates``: run the three gates on a registered version.

Every gate statistic is logged as a metric of the version's training run, the report
JSON and figures as its artifacts, each outcome as a tag on the model version, and the
gate table is published as a Prefect markdown artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from . import tracking
from .caching import keyed_task_options
from .config import PipelineConfig
from .refs import DatasetRef, GateOutcome, ModelRef, resolve


def version_ref(client: MlflowClient, name: str, version: str) -> ModelRef:
    mv = client.get_model_version(name, str(version))
    return ModelRef(name=name, version=str(mv.version), run_id=mv.run_id, model_uri=mv.source,
                    head_name=mv.tags.get("head_name", ""), head_type=mv.tags.get("head_type", ""))


def gate_statistics(report) -> dict[str, float]:
    stats = {}
    for r in report.results:
        stats[f"{r.name}.statistic"] = float(r.statistic)
        stats[f"{r.name}.threshold"] = float(r.threshold)
        stats[f"{r.name}.passed"] = float(r.passed)
        for k, v in r.details.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                stats[f"{r.name}.{k}"] = float(v)
    for k, v in (report.meta.get("scores") or {}).items():
        stats[f"scores.{k}"] = float(v)
    return stats


@task(name="run-gates", persist_result=True)
def run_gates_task(config: PipelineConfig, model: ModelRef, oracle: DatasetRef) -> GateOutcome:
    import jax

    from vardax_core.gates import GateConfig, run_gates
    from vardax_core.oracle import open_oracle

    logger = get_run_logger()
    tracking.configure(config)
    problem = config.problem.build()
    posterior = tracking.load_posterior(model.model_uri)
    profile = config.gates.gate_profile()
    gate_config = profile.config
    logger.info("gating %s v%s (%s) against %s under the %s gate profile", model.name, model.version,
                model.head_name, oracle.path, profile.label)
    with tracking.artifacts_tmpdir() as tmp:
        report, figures = run_gates(posterior, problem, open_oracle(oracle.path, problem), gate_config,
                                    jax.random.key(config.gates.seed), figure_dir=str(Path(tmp) / "figures"))
        stats = gate_statistics(report)
        prefix = "gate." if profile.certifies else "exploration.gate."
        with mlflow.start_run(run_id=model.run_id):
            # on the training run, and linked to the logged model itself (MLflow 3 model id)
            mlflow.log_metrics({f"{prefix}{k}": v for k, v in stats.items() if v == v and abs(v) != float("inf")},
                               model_id=tracking.model_id_of(model.model_uri))
            mlflow.log_text(report.to_json(indent=2), "gates/report.json")
            mlflow.log_artifacts(str(Path(tmp) / "figures"), "gates/figures")
        figure_names = [Path(p).name for p in figures]
    gates = {r.name: bool(r.passed) for r in report.results}
    create_markdown_artifact(
        key=f"gates-{model.name}-v{model.version}".lower().replace("_", "-").replace(".", "-"),
        markdown=f"### {model.name} v{model.version} ({model.head_name})\n\n" + report.to_markdown(),
        description=f"gate report of {model.name} version {model.version}",
    )
    logger.info("gates of v%s (%s): %s", model.version, model.head_name,
                ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in gates.items()))
    return GateOutcome(model=model, passed=report.passed, gates=gates, statistics=stats,
                       report_json=report.to_json(), figures=figure_names)


def gates_key(config: PipelineConfig, model: ModelRef, oracle: DatasetRef) -> str:
    """The gate cache key: the version, the oracle store, the gate section, the gate
    profile's hash, the code version and the hash of the gates' source (any change to a
    gate's code re-gates instead of reusing a cached verdict)."""
    from vardax_core import __version__
    from vardax_core.gates import gates_source_hash

    payload = {"model": model.model_dump(mode="json", exclude={"cached"}), "oracle": oracle.hash,
               "gates": config.gates.model_dump(mode="json"), "profile": config.gates.gate_profile().hash,
               "code_version": __version__, "gates_source": gates_source_hash()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def model_card(config: PipelineConfig, outcome: GateOutcome, oracle: DatasetRef, profile, problem_hash: str) -> str:
    """The model version's description: what it is, its release verdict with the gate
    table, and its skill on the held-out events."""
    from vardax_core import __version__
    from vardax_core.gates import GateReport

    m, st = outcome.model, outcome.statistics
    report = GateReport.from_json(outcome.report_json)
    lines = [
        f"**{m.head_name}** ({m.head_type} head) — amortized posterior for problem `{config.problem.name}` "
        f"(hash `{problem_hash}`), config `{config.name}`.",
        "",
        f"**Verdict: {'PASSED' if outcome.passed else 'FAILED'}** under the `{profile.label}` gate profile "
        f"(hash `{profile.hash}`), vardax_core {__version__}, against oracle store `{oracle.hash}` "
        f"(reference: {report.meta.get('reference', '?')}).",
        "",
        report.to_markdown(),
    ]
    if "scores.rmse" in st:
        lines += ["", f"Skill on the held-out events: RMSE {st['scores.rmse']:.4g} (reference posterior mean "
                      f"{st.get('scores.rmse_reference', float('nan')):.4g}), energy score "
                      f"{st.get('scores.energy_score', float('nan')):.4g}, CRPS {st.get('scores.crps', float('nan')):.4g}."]
    lines += ["", "Input: `y`, `mask` (events, T, *obs); output: `mean`, `std` (events, *state); params `n_samples`, "
                  "`seed` (see the logged signature)."]
    return "\n".join(lines)


def record_verdict(client: MlflowClient, config: PipelineConfig, outcome: GateOutcome, oracle: DatasetRef) -> None:
    """Tag the version with its verdict (fresh or cached: tags are always re-applied) and,
    when a release verdict failed, take the champion alias from it (to the best remaining
    version with a current pass, or none), recording why."""
    profile = config.gates.gate_profile()
    problem_hash = config.problem.build().hash
    reference = json.loads(outcome.report_json).get("meta", {}).get("reference", "")
    name, version = outcome.model.name, outcome.model.version
    # a failing champion loses the alias *before* its failing tags are written: a crash in
    # between never leaves a champion without a current passing verdict
    if profile.certifies and not outcome.passed and tracking.current_alias(client, name, tracking.CHAMPION) == version:
        failed = ", ".join(g for g, ok in outcome.gates.items() if not ok)
        after = tracking.demote_champion(client, name, version,
                                         f"failed a re-gate ({failed}) on oracle store {oracle.hash}", problem_hash)
        get_run_logger().warning("champion %s of %s failed its gates (%s): champion is now %s", version, name,
                                 failed, after)
    tracking.tag_head_verdict(client, outcome.model, outcome.gates, profile, problem_hash, reference, oracle.hash)
    if profile.certifies:
        client.update_model_version(name, version, description=model_card(config, outcome, oracle, profile,
                                                                           problem_hash))


@flow(name="validate-gates", log_prints=True)
def validate_gates(config: PipelineConfig, model: ModelRef, oracle: DatasetRef) -> GateOutcome:
    """Gate one model version under the config's gate profile; cached on (version, oracle
    store, gate settings, profile, code version) as long as the version still carries its
    verdict tags. A champion whose release verdict fails loses the alias."""
    client = tracking.configure(config)
    mv = client.get_model_version(model.name, model.version)
    prefix = "" if config.gates.gate_profile().certifies else tracking.EXPLORATION_PREFIX
    valid = mv.tags.get(prefix + "gates_passed") in ("true", "false")
    opts = keyed_task_options(gates_key(config, model, oracle), valid)
    outcome = resolve(run_gates_task.with_options(**opts)(config, model, oracle, return_state=True))
    record_verdict(client, config, outcome, oracle)
    return outcome
