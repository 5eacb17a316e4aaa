"""Step flow ``promote``: move the ``champion`` alias to the best version that passed.

Only versions whose three gates passed are eligible; among them the best is the one
with the highest agreement fraction, then the lowest adjoint error, then the highest
SBC p-value. With no eligible candidate the champion stays where it is.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from . import tracking
from .config import PipelineConfig
from .refs import GateOutcome, PromotionResult


def rank_key(outcome: GateOutcome) -> tuple:
    s = outcome.statistics
    return (
        s.get("posterior_agreement.statistic", 0.0),
        -s.get("adjoint_calibration.statistic", float("inf")),
        s.get("sbc.statistic", 0.0),
        int(outcome.model.version),
    )


@flow(name="promote", log_prints=True)
def promote(config: PipelineConfig, outcomes: list[GateOutcome]) -> PromotionResult:
    """Promote the best candidate whose gates all passed; otherwise keep the champion."""
    logger = get_run_logger()
    client = tracking.configure(config)
    name = config.registered_model_name()
    previous = tracking.current_alias(client, name, tracking.CHAMPION)
    # the registry's tags are the record of truth: re-check them rather than trust inputs
    eligible = [o for o in outcomes if o.passed and tracking.version_passed_all_gates(client, name, o.model.version)]
    if not eligible:
        failed = {o.model.head_name: [g for g, ok in o.gates.items() if not ok] for o in outcomes}
        reason = f"no candidate passed all gates ({failed}); champion stays at {previous}"
        logger.warning(reason)
        return PromotionResult(champion=previous, previous=previous, changed=False, reason=reason)
    best = max(eligible, key=rank_key)
    tracking.set_champion(client, name, best.model.version)
    reason = f"version {best.model.version} ({best.model.head_name}) passed all gates and ranks best of {len(eligible)}"
    logger.info("champion of %s: %s -> %s (%s)", name, previous, best.model.version, reason)
    return PromotionResult(
        champion=best.model.version, previous=previous, changed=best.model.version != previous, reason=reason,
        details={"eligible": [o.model.version for o in eligible]},
    )
