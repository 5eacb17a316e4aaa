"""What steps pass each other: references to datasets and model versions, never arrays."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class DatasetRef(BaseModel):
    """A Zarr store: its kind (``pairs``, ``oracle``, …), location and content hash."""

    model_config = ConfigDict(frozen=True)

    kind: str
    path: str
    hash: str
    n_events: int
    cached: bool = False  # set by the step flow when its task was served from the cache


class ModelRef(BaseModel):
    """A registered model version and the MLflow run that trained it."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    run_id: str
    model_uri: str
    head_name: str
    head_type: str
    cached: bool = False


class GateOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: ModelRef
    passed: bool
    gates: dict[str, bool]
    statistics: dict[str, float]
    report_json: str
    figures: list[str] = []
    cached: bool = False


class PromotionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    champion: str | None
    previous: str | None
    changed: bool
    reason: str
    details: dict[str, Any] = {}


def resolve(state, ref_cls=None):
    """The result of a task state, marked ``cached`` when Prefect served it from the cache."""
    result = state.result()
    if state.name == "Cached" and hasattr(result, "model_copy"):
        result = result.model_copy(update={"cached": True})
    return result
