"""Gate results and the gate report: JSON round trip and a markdown summary.

Every value in a result's ``details`` is JSON-native (dicts, lists, str, int, float,
bool, None); arrays are stored as lists. Non-finite floats are stored as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so the JSON is strict (MLflow, Prefect
artifacts); ``statistic`` and ``threshold`` are decoded back to floats.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

GATE_NAMES = ("posterior_agreement", "adjoint_calibration", "sbc")

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float_to_json(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _float_from_json(x) -> float:
    if isinstance(x, str):
        if x not in _NONFINITE:
            raise ValueError(f"not a float: {x!r}")
        return _NONFINITE[x]
    return float(x)


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON-native values: arrays to lists, NumPy/JAX scalars to Python,
    non-finite floats to ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, type(None))):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _float_to_json(float(obj))
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # NumPy / JAX arrays
        a = np.asarray(obj)
        return jsonable(a.item()) if a.ndim == 0 else jsonable(a.tolist())
    raise TypeError(f"value of type {type(obj).__name__} is not JSON-serialisable")


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The outcome of one gate.

    ``statistic`` is compared with ``threshold`` by the rule in ``details["rule"]``
    (for example ``"statistic >= threshold"`` for agreement, where the statistic is the
    fraction of agreeing events). When the gate cannot be evaluated honestly (non-finite
    samples or estimates, no usable events) ``passed`` is False and ``details["reason"]``
    says why.
    """

    name: str
    passed: bool
    statistic: float
    threshold: float
    details: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "passed", bool(self.passed))
        object.__setattr__(self, "statistic", float(self.statistic))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "details", jsonable(dict(self.details)))

    @property
    def reason(self) -> str | None:
        return self.details.get("reason")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "passed": self.passed,
            "statistic": _float_to_json(self.statistic),
            "threshold": _float_to_json(self.threshold),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GateResult":
        missing = [k for k in ("name", "passed", "statistic", "threshold") if k not in d]
        if missing:
            raise ValueError(f"GateResult: missing field(s) {', '.join(missing)}")
        return cls(d["name"], d["passed"], _float_from_json(d["statistic"]),
                   _float_from_json(d["threshold"]), d.get("details", {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, s: str) -> "GateResult":
        return cls.from_dict(json.loads(s))


def failed(name: str, threshold: float, reason: str, **details) -> GateResult:
    """A failing result that could not be evaluated honestly (statistic NaN)."""
    return GateResult(name, False, math.nan, threshold, {"reason": reason, **details})


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.3e}"
    return f"{x:.4f}"


@dataclasses.dataclass(frozen=True)
class GateReport:
    """The three gates of one posterior (plus reported diagnostics and metadata).

    ``passed`` is True only when all three gates (:data:`GATE_NAMES`) are present and
    passed. ``config`` is the :class:`GateConfig` as a dict; ``diagnostics`` and
    ``meta`` (problem, posterior, code version, figure paths, …) are JSON-native.
    """

    results: tuple[GateResult, ...]
    config: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        results = tuple(self.results)
        names = [r.name for r in results]
        if len(set(names)) != len(names):
            raise ValueError(f"GateReport: duplicate gate names in {names}")
        object.__setattr__(self, "results", results)
        object.__setattr__(self, "config", jsonable(dict(self.config)))
        object.__setattr__(self, "diagnostics", jsonable(dict(self.diagnostics)))
        object.__setattr__(self, "meta", jsonable(dict(self.meta)))

    @property
    def passed(self) -> bool:
        by_name = {r.name: r for r in self.results}
        return all(n in by_name and by_name[n].passed for n in GATE_NAMES)

    @property
    def missing(self) -> list[str]:
        names = {r.name for r in self.results}
        return [n for n in GATE_NAMES if n not in names]

    def __getitem__(self, name: str) -> GateResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no gate {name!r} in this report; gates: {[r.name for r in self.results]}")

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
            "config": self.config,
            "diagnostics": self.diagnostics,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GateReport":
        if "results" not in d:
            raise ValueError("GateReport: missing field `results`")
        return cls(tuple(GateResult.from_dict(r) for r in d["results"]), d.get("config", {}),
                   d.get("diagnostics", {}), d.get("meta", {}))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False, indent=indent)

    @classmethod
    def from_json(cls, s: str) -> "GateReport":
        return cls.from_dict(json.loads(s))

    def to_markdown(self) -> str:
        """A summary for humans (a Prefect artifact): one row per gate, then reasons."""
        lines = [
            f"**Gates: {'PASSED' if self.passed else 'FAILED'}**"
            + (f" (missing: {', '.join(self.missing)})" if self.missing else ""),
            "",
            "| gate | result | statistic | rule | threshold |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            rule = r.details.get("rule", "")
            lines.append(f"| {r.name} | {'pass' if r.passed else '**FAIL**'} | {_fmt(r.statistic)} | "
                         f"{rule} | {_fmt(r.threshold)} |")
        refs = []  # which references and statistic the gates used (absent from old reports)
        if "agreement_reference" in self.meta:
            refs.append(f"agreement against {self.meta['agreement_reference']}")
        if "reference" in self.meta:
            stat = self.meta.get("adjoint_statistic", "operator-norm")
            refs.append(f"adjoint against {self.meta['reference']} ({stat})")
        if refs:
            lines += ["", "References: " + "; ".join(refs)]
        sc = self.meta.get("scores")
        if sc and sc.get("n_events"):
            ref = lambda k: f" (reference posterior {sc[k]:.4g})" if k in sc else ""  # noqa: E731
            lines += ["", f"Skill on {sc['n_events']} held-out events (not gating): RMSE {sc['rmse']:.4g}"
                      f"{ref('rmse_reference')}, 4DVar MAP {sc['rmse_map']:.4g}; energy score "
                      f"{sc['energy_score']:.4g}{ref('energy_score_reference')}; CRPS {sc['crps']:.4g}"
                      f"{ref('crps_reference')} ({sc['n_draws']} draws)"]
        notes = [f"- {r.name}: {r.details['summary']}" for r in self.results if r.details.get("summary")]
        notes += [f"- {r.name} failed: {r.reason}" for r in self.results if r.reason]
        if notes:
            lines += ["", *notes]
        diag = self.diagnostics.get("summary")
        if diag:
            lines += ["", "Diagnostics (reported, not gating):", ""]
            lines += [f"- {k}: {_fmt(v) if isinstance(v, float) else v}" for k, v in diag.items()]
        return "\n".join(lines)
