"""The parent flow ``six-step-cycle``: simulate → oracle → train every head → gate → promote.

Each step is its own flow (usable alone) and caches on dataset paths and content
hashes, so rerunning an unchanged config skips finished work. The cycle ends with a
summary (heads, gate outcomes, champion, where the data and UIs are) published as a
Prefect markdown artifact and printed by ``vardax cycle``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from . import tracking
from .config import PipelineConfig, load_config, vardax_home
from .gates import validate_gates
from .oracle import oracle_solve
from .promote import promote
from .refs import DatasetRef, GateOutcome, PromotionResult
from .simulate import simulate_pairs
from .train import train_head


class CycleSummary(BaseModel):
    config: str
    problem: str
    registered_model: str
    datasets: dict[str, DatasetRef]
    outcomes: list[GateOutcome]
    promotion: PromotionResult
    steps: list[dict[str, Any]]
    tracking_uri: str
    store_root: str


@flow(name="six-step-cycle", log_prints=True)
def six_step_cycle(config: PipelineConfig | None = None) -> CycleSummary:
    """Run the cycle for every configured head and promote the best head whose three
    gates passed (the champion stays where it is if none did). Without a config, the
    default ``configs/lorenz96.yaml``."""
    logger = get_run_logger()
    config = config or load_config("lorenz96")
    logger.info("six-step cycle %r on %s with heads %s", config.name, config.problem.name, [h.name for h in config.heads])
    steps: list[dict[str, Any]] = []
    pairs = simulate_pairs(config)
    steps += [{"step": "simulate-pairs", "what": k, "cached": v.cached} for k, v in pairs.items()]
    oracle = oracle_solve(config, pairs["heldout"])
    steps.append({"step": "oracle-solve", "what": "heldout", "cached": oracle.cached})
    outcomes = []
    for head in config.heads:
        model = train_head(config, head, pairs["train"], oracle)
        steps.append({"step": "train-head", "what": head.name, "cached": model.cached})
        outcome = validate_gates(config, model, oracle)
        steps.append({"step": "validate-gates", "what": head.name, "cached": outcome.cached})
        outcomes.append(outcome)
    promotion = promote(config, outcomes)
    summary = CycleSummary(
        config=config.name, problem=config.problem.name, registered_model=config.registered_model_name(),
        datasets={"pairs-train": pairs["train"], "pairs-heldout": pairs["heldout"], "oracle": oracle},
        outcomes=outcomes, promotion=promotion, steps=steps,
        tracking_uri=config.tracking_uri(), store_root=config.resolved_store_root(),
    )
    create_markdown_artifact(key="six-step-cycle-summary", markdown=summary_markdown(summary),
                             description=f"cycle {config.name}")
    return summary


def summary_markdown(s: CycleSummary) -> str:
    lines = [
        f"## Six-step cycle `{s.config}` on `{s.problem}`",
        "",
        "| head | version | agreement | adjoint | SBC | all gates |",
        "|---|---|---|---|---|---|",
    ]
    for o in s.outcomes:
        g = o.gates

        def cell(name):
            ok = g.get(name)
            stat = o.statistics.get(f"{name}.statistic")
            return f"{'pass' if ok else 'FAIL'} ({stat:.3g})" if stat is not None else "-"

        lines.append(f"| {o.model.head_name} ({o.model.head_type}) | {o.model.version} | {cell('posterior_agreement')} | "
                     f"{cell('adjoint_calibration')} | {cell('sbc')} | {'PASSED' if o.passed else 'failed'} |")
    p = s.promotion
    lines += [
        "",
        f"**Champion** of `{s.registered_model}`: version {p.champion or '-'}"
        + (f" (was {p.previous or '-'})" if p.changed else " (unchanged)") + f" — {p.reason}",
        "",
        "| dataset | path | events | hash |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | `{d.path}` | {d.n_events} | {d.hash} |" for k, d in s.datasets.items()]
    ran = [f"{st['step']}:{st['what']}" for st in s.steps if not st["cached"]]
    lines += ["", f"Steps run: {', '.join(ran) or 'none (all cached)'}", ""]
    lines += [
        f"- MLflow: tracking `{s.tracking_uri}` — UI: `make ui` "
        f"(or `mlflow ui --backend-store-uri {s.tracking_uri}`)",
        f"- Prefect: state under `{vardax_home() / 'prefect'}` — UI: `make serve`",
        f"- Zarr stores under `{s.store_root}`",
    ]
    return "\n".join(lines)


def print_summary(summary: CycleSummary) -> None:
    print()
    print(summary_markdown(summary))


if __name__ == "__main__":
    import sys

    print_summary(six_step_cycle(load_config(sys.argv[1] if len(sys.argv) > 1 else "lorenz96")))
