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
the reason). With no eligible candidate the champion stays where it is. The rule itself,
:func:`challenge`, is the one that moves any champion (the emulators' too).
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


def run_metric(client, name: str, version: str | None, metric: str) -> float | None:
    """The metric ``metric`` of the run that trained ``version`` (validate-gates logs
    every statistic there as ``gate.<name>``), if recorded."""
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    return client.get_run(mv.run_id).data.metrics.get(metric) if mv.run_id else None


def challenge(client, name: str, version: str, *, quality: str, measured_on: str, force: bool = False,
              problem_hash: str | None = None, head: bool = True, why: str = "") -> PromotionResult:
    """The one rule that moves a registered model's ``champion`` (heads and emulators):
    ``version`` takes it when it has a current passing verdict
    (``tracking.set_champion``: for a head, the release verdict on ``problem_hash``; for
    an emulator, both gates) and is at least as good as the incumbent on the run metric
    ``quality`` (lower is better) — compared only when both were measured on the same
    ``measured_on`` tag value (the same held-out events or gate settings); a worse
    version leaves the champion in place unless ``force`` (said in the reason). ``why``
    starts the reason."""
    previous = tracking.current_alias(client, name, tracking.CHAMPION)
    score = run_metric(client, name, version, quality)
    reason = why or f"version {version} passed all gates"
    if score is not None:
        reason += f" ({quality} {score:.4g})"
    if previous is not None and previous != str(version):
        inc_score = run_metric(client, name, previous, quality)
        tags = [client.get_model_version(name, v).tags.get(measured_on) for v in (previous, version)]
        comparable = inc_score is not None and score is not None and tags[0] is not None and tags[0] == tags[1]
        if comparable and score > inc_score:
            if not force:
                reason = (f"version {version} passed all gates but its {quality} {score:.4g} is worse than champion "
                          f"{previous}'s {inc_score:.4g} on the same {measured_on}; champion stays at {previous} "
                          "(force=True overrides)")
                return PromotionResult(champion=previous, previous=previous, changed=False, reason=reason)
            reason += f"; FORCED over champion {previous} ({quality} {inc_score:.4g})"
        elif comparable:
            reason += f"; at least as good as champion {previous} ({quality} {inc_score:.4g})"
        else:
            reason += f"; champion {previous} has no {quality} on the same {measured_on} to compare with"
    try:
        tracking.set_champion(client, name, version, problem_hash, reason=reason, head=head)
    except ValueError as e:  # no current passing verdict in the registry
        return PromotionResult(champion=previous, previous=previous, changed=False, reason=str(e))
    return PromotionResult(champion=str(version), previous=previous, changed=str(version) != previous, reason=reason)


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
    result = challenge(client, name, best.model.version, quality=f"gate.{QUALITY}", measured_on="oracle_hash",
                       force=force, problem_hash=problem_hash,
                       why=f"version {best.model.version} ({best.model.head_name}) passed all gates and ranks best "
                           f"of {len(eligible)}")
    (logger.info if result.champion == best.model.version else logger.warning)(
        "champion of %s: %s -> %s (%s)", name, previous, result.champion, result.reason)
    return result.model_copy(update={"details": {"eligible": [o.model.version for o in eligible]}})
