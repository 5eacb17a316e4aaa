"""Step flow ``promote``: move the ``champion`` alias to the best version that passed.

Only versions with a current passing verdict are eligible: all three gates passed under
the release gate profile, with this code version, on this problem (the version's
``problem_hash`` and ``gate_problem_hash`` tags; ``flows.tracking.head_verdict_problems``). The quality measure is the mean
**energy score** on the held-out events (``scores.energy_score`` of the gate run: proper
for the joint posterior, lower is better; never a p-value): the eligible version with the
lowest one is the best (versions without a score rank after those with one, then by the
agreement fraction and the adjoint error). The best replaces the current champion only if
it is at least as good — its energy score is ≤ the champion's, both measured on the same
oracle store (``oracle_hash`` tag) — unless the operator passes ``force=True`` (logged in
the reason). With no eligible candidate the champion stays where it is.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from . import tracking
from .config import PipelineConfig
from .refs import GateOutcome, PromotionResult


QUALITY = "scores.energy_score"


def rank_key(outcome: GateOutcome) -> tuple:
    """Smaller is better: the energy score first, then agreement (higher), adjoint error
    (lower) and the newer version."""
    s = outcome.statistics
    score = s.get(QUALITY)
    return (
        score is None,
        score if score is not None else 0.0,
        -s.get("posterior_agreement.statistic", 0.0),
        s.get("adjoint_calibration.statistic", float("inf")),
        -int(outcome.model.version),
    )


def incumbent_quality(client, name: str, version: str | None) -> tuple[float | None, str | None]:
    """(energy score, oracle hash) the champion ``version`` was gated with, if recorded."""
    if version is None:
        return None, None
    mv = client.get_model_version(name, version)
    # validate-gates logs every statistic on the version's run as ``gate.<name>``
    score = client.get_run(mv.run_id).data.metrics.get(f"gate.{QUALITY}") if mv.run_id else None
    return score, mv.tags.get("oracle_hash")


@flow(name="promote", log_prints=True)
def promote(config: PipelineConfig, outcomes: list[GateOutcome], force: bool = False) -> PromotionResult:
    """Promote the best candidate whose gates all passed if it is at least as good as the
    champion (or ``force``); otherwise keep the champion."""
    logger = get_run_logger()
    client = tracking.configure(config)
    name = config.registered_model_name()
    previous = tracking.current_alias(client, name, tracking.CHAMPION)
    problem_hash = config.problem.build().hash
    # the registry's tags are the record of truth: re-check them rather than trust inputs
    # (a current release verdict, this code version, this problem)
    why = {o.model.version: tracking.head_verdict_problems(client.get_model_version(name, o.model.version).tags,
                                                            problem_hash) for o in outcomes}
    eligible = [o for o in outcomes if o.passed and not why[o.model.version]]
    if not eligible:
        failed = {o.model.head_name: [g for g, ok in o.gates.items() if not ok] or why[o.model.version]
                  for o in outcomes}
        reason = f"no candidate passed all gates under the release profile ({failed}); champion stays at {previous}"
        logger.warning(reason)
        return PromotionResult(champion=previous, previous=previous, changed=False, reason=reason)
    best = min(eligible, key=rank_key)
    reason = f"version {best.model.version} ({best.model.head_name}) passed all gates and ranks best of {len(eligible)}"
    score = best.statistics.get(QUALITY)
    if score is not None:
        reason += f" (energy score {score:.4g})"
    if previous is not None and previous != best.model.version:
        inc_score, inc_oracle = incumbent_quality(client, name, previous)
        oracle_hash = client.get_model_version(name, best.model.version).tags.get("oracle_hash")
        comparable = inc_score is not None and score is not None and inc_oracle == oracle_hash
        if comparable and score > inc_score:
            if not force:
                reason = (f"version {best.model.version} passed all gates but its energy score {score:.4g} is worse "
                          f"than champion {previous}'s {inc_score:.4g} on the same held-out events; champion stays "
                          f"at {previous} (force=True overrides)")
                logger.warning(reason)
                return PromotionResult(champion=previous, previous=previous, changed=False, reason=reason,
                                       details={"eligible": [o.model.version for o in eligible]})
            reason += f"; FORCED over champion {previous} (energy score {inc_score:.4g})"
        elif comparable:
            reason += f"; at least as good as champion {previous} (energy score {inc_score:.4g})"
        else:
            reason += f"; champion {previous} has no energy score on the same oracle store to compare with"
    tracking.set_champion(client, name, best.model.version, problem_hash, reason=reason)
    logger.info("champion of %s: %s -> %s (%s)", name, previous, best.model.version, reason)
    return PromotionResult(
        champion=best.model.version, previous=previous, changed=best.model.version != previous, reason=reason,
        details={"eligible": [o.model.version for o in eligible]},
    )
