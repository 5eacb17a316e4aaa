"""The parent flow ``six-step-cycle``: simulate → oracle → [emulator] → train every head → gate → promote.

With the config's ``emulator`` section enabled, steps 3–4 run after the oracle: the
``train-emulator`` flow (train, gate on forward and Jacobian error, champion of
``vardax-<problem>-emulator`` only when both pass) and the ``emulator-oracle`` flow (the
oracle's 4DVar with ``forward=emulator`` on the held-out events, gated against the
physics oracle); both outcomes are in the summary. With ``emulator.train_pairs`` the
heads' training pairs are simulated with the emulator when it passed both its gates
(``simulate-emulator-pairs``; the physics training pairs are then not simulated at all),
and the heads are gated against the physics oracle as always; the summary says which
pairs the heads trained on, and why.

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

from .config import ConfigName, PipelineConfig, load_config, vardax_home, with_overrides
from .emulator import EmulatorAgreement, EmulatorOutcome, emulator_oracle, simulate_emulator_pairs, train_emulator
from .gates import validate_gates
from .oracle import oracle_solve
from .promote import promote
from .refs import DatasetRef, GateOutcome, PromotionResult
from .simulate import simulate_pairs
from .train import train_head


class EmulatorStepResult(BaseModel):
    """Steps 3–4 of a cycle: the emulator's gates and its 4DVar against the physics oracle."""

    outcome: EmulatorOutcome
    agreement: EmulatorAgreement


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
    emulator: EmulatorStepResult | None = None
    training_pairs: str = "physics"
    gate_profile: str = ""


def training_pairs_source(config: PipelineConfig, emulator: EmulatorStepResult | None) -> tuple[bool, str]:
    """Whether the heads train on pairs simulated with the cycle's emulator, and why: only
    with ``emulator.train_pairs``, only when the emulator passed both its gates and its
    4DVar passed step 4's gate (within 1 σ of the physics oracle on the held-out events)."""
    if not config.emulator_train_pairs():
        return False, "physics"
    if emulator is None:
        raise ValueError("emulator.train_pairs is set but the cycle ran no emulator step")
    o = emulator.outcome
    if not o.passed:
        failed = sorted(g for g, ok in o.gates.items() if not ok)
        return False, (f"physics: {o.model.name} v{o.model.version} failed {', '.join(failed)}, "
                       "so its pairs are not used (emulator.train_pairs)")
    a = emulator.agreement
    if not a.passed:
        return False, (f"physics: {o.model.name} v{o.model.version} passed its gates but its 4DVar failed step 4's "
                       f"agreement with the physics oracle ({a.statistic:.3g} of events within 1 σ, threshold "
                       f"{a.threshold:.3g}), so its pairs are not used (emulator.train_pairs)")
    return True, (f"emulator: {o.model.name} v{o.model.version} (forward and Jacobian gates passed, its 4DVar "
                  "agrees with the physics oracle)")


@flow(name="six-step-cycle-named", log_prints=True)
def named_cycle(config: ConfigName = "lorenz96", overrides: dict[str, Any] | None = None) -> CycleSummary:
    """The six-step cycle on a named config of ``configs/`` (a list in the run form) with
    a few fields overridden by dotted path, e.g. ``{"data.n_train": 5000,
    "heads.0.simulate.n_pairs": 200000}`` — validated before anything runs. The
    ``six-step-cycle/manual`` deployment's entry point."""
    return six_step_cycle(with_overrides(load_config(config), overrides))


@flow(name="six-step-cycle", log_prints=True)
def six_step_cycle(config: PipelineConfig | None = None) -> CycleSummary:
    """Run the cycle for every configured head and promote the best head whose three
    gates passed (the champion stays where it is if none did). Without a config, the
    default ``configs/lorenz96.yaml``."""
    logger = get_run_logger()
    config = config or load_config("lorenz96")
    logger.info("six-step cycle %r on %s with heads %s", config.name, config.problem.name, [h.name for h in config.heads])
    steps: list[dict[str, Any]] = []
    # with emulated training pairs, the physics ones are simulated only if the emulator fails
    pairs = simulate_pairs(config, ("heldout",) if config.emulator_train_pairs() else ("train", "heldout"))
    steps += [{"step": "simulate-pairs", "what": k, "cached": v.cached} for k, v in pairs.items()]
    oracle = oracle_solve(config, pairs["heldout"])
    steps.append({"step": "oracle-solve", "what": "heldout", "cached": oracle.cached})
    emulator = None
    if config.emulator_enabled():
        outcome = train_emulator(config)
        steps.append({"step": "train-emulator", "what": "emulator", "cached": outcome.model.cached})
        steps.append({"step": "gate-emulator", "what": "emulator", "cached": outcome.cached})
        agreement = emulator_oracle(config, outcome.model, oracle)
        steps.append({"step": "emulator-oracle", "what": "heldout", "cached": agreement.cached})
        emulator = EmulatorStepResult(outcome=outcome, agreement=agreement)
    use_emulator, training_pairs = training_pairs_source(config, emulator)
    if use_emulator:
        train_pairs = simulate_emulator_pairs(config, emulator.outcome.model)
        steps.append({"step": "simulate-emulator-pairs", "what": "train", "cached": train_pairs.cached})
    elif "train" in pairs:
        train_pairs = pairs["train"]
    else:
        logger.warning("heads train on physics pairs: %s", training_pairs)
        train_pairs = simulate_pairs(config, ("train",))["train"]
        steps.append({"step": "simulate-pairs", "what": "train", "cached": train_pairs.cached})
    outcomes = []
    for head in config.heads:
        model = train_head(config, head, train_pairs, oracle)
        steps.append({"step": "train-head", "what": head.name, "cached": model.cached})
        outcome = validate_gates(config, model, oracle)
        steps.append({"step": "validate-gates", "what": head.name, "cached": outcome.cached})
        outcomes.append(outcome)
    promotion = promote(config, outcomes)
    summary = CycleSummary(
        config=config.name, problem=config.problem.name, registered_model=config.registered_model_name(),
        datasets={"pairs-train": train_pairs, "pairs-heldout": pairs["heldout"], "oracle": oracle},
        outcomes=outcomes, promotion=promotion, steps=steps,
        tracking_uri=config.tracking_uri(), store_root=config.resolved_store_root(), emulator=emulator,
        training_pairs=training_pairs,
        gate_profile=f"{config.gates.gate_profile().label} ({config.gates.gate_profile().hash})",
    )
    create_markdown_artifact(key="six-step-cycle-summary", markdown=summary_markdown(summary),
                             description=f"cycle {config.name}")
    return summary


def summary_markdown(s: CycleSummary) -> str:
    lines = [
        f"## Six-step cycle `{s.config}` on `{s.problem}`",
        "",
        *([f"Gates under the `{s.gate_profile}` profile.", ""] if s.gate_profile else []),
        "| head | version | agreement | adjoint | SBC | all gates | RMSE (reference) | energy score (reference) | CRPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in s.outcomes:
        g = o.gates

        def cell(name):
            ok = g.get(name)
            stat = o.statistics.get(f"{name}.statistic")
            return f"{'pass' if ok else 'FAIL'} ({stat:.3g})" if stat is not None else "-"

        def score(name):
            v, ref = o.statistics.get(f"scores.{name}"), o.statistics.get(f"scores.{name}_reference")
            return "-" if v is None else f"{v:.4g}" + (f" ({ref:.4g})" if ref is not None else "")

        lines.append(f"| {o.model.head_name} ({o.model.head_type}) | {o.model.version} | {cell('posterior_agreement')} | "
                     f"{cell('adjoint_calibration')} | {cell('sbc')} | {'PASSED' if o.passed else 'failed'} | "
                     f"{score('rmse')} | {score('energy_score')} | {score('crps')} |")
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
    if s.emulator is not None:
        lines += ["", *emulator_markdown(s.emulator)]
    lines += ["", f"Training pairs of the heads: {s.training_pairs}. Every head is gated against the physics oracle."]
    ran = [f"{st['step']}:{st['what']}" for st in s.steps if not st["cached"]]
    lines += ["", f"Steps run: {', '.join(ran) or 'none (all cached)'}", ""]
    lines += [
        f"- MLflow: tracking `{s.tracking_uri}` — UI: `make ui` "
        f"(or `mlflow ui --backend-store-uri {s.tracking_uri}`)",
        f"- Prefect: state under `{vardax_home() / 'prefect'}` — UI: `make serve`",
        f"- Zarr stores under `{s.store_root}`",
    ]
    return "\n".join(lines)


def emulator_markdown(e: EmulatorStepResult) -> list[str]:
    o, a = e.outcome, e.agreement

    def cell(name, passed):
        stat = o.statistics.get(f"{name}.statistic") if name != "emulator_agreement" else a.statistic
        return f"{'pass' if passed else 'FAIL'} ({stat:.3g})" if stat is not None else "-"

    return [
        "| emulator | version | forward | Jacobian | 4DVar agreement (events) | champion |",
        "|---|---|---|---|---|---|",
        f"| {o.model.name} | {o.model.version} | {cell('emulator_forward', o.gates.get('emulator_forward'))} | "
        f"{cell('emulator_jacobian', o.gates.get('emulator_jacobian'))} | "
        f"{cell('emulator_agreement', a.passed)} ({a.n_events}) | {o.champion or '-'} |",
    ]


def print_summary(summary: CycleSummary) -> None:
    print()
    print(summary_markdown(summary))


if __name__ == "__main__":
    import sys

    print_summary(six_step_cycle(load_config(sys.argv[1] if len(sys.argv) > 1 else "lorenz96")))
