"""Gate profiles: which gate settings may certify a head for production.

A :class:`GateProfile` is a named, versioned set of :class:`GateConfig` settings. The
``release`` profile is the defaults of :class:`GateConfig` (DESIGN.md's gates, with the
size and power measured by ``benchmarks/gate_power.py``); only a verdict reached under
settings at least as strict as it may certify a head. Anything weaker (fewer SBC runs, a
looser threshold, a subset of events, another statistic) is the ``exploration`` profile:
useful for a quick look, never a promotion.

"At least as strict", per setting that decides a verdict:

- agreement: ``tolerance_sigma`` ≤, ``min_fraction`` ≥, ``agreement_events`` None (every
  converged held-out event);
- adjoint: ``adjoint_threshold`` ≤, ``adjoint_tail`` ≤, ``adjoint_events`` ≥,
  ``adjoint_statistic`` and ``adjoint_hessian`` equal, ``adjoint_reference`` "auto" or
  "mcmc" (never the IFT Jacobian where an MCMC reference exists), and for the
  operator-norm statistic ``adjoint_quantile``, ``n_probes``, ``power_steps`` ≥;
- SBC: ``sbc_runs`` ≥, ``sbc_draws`` ≥, ``sbc_bins`` equal, ``sbc_alpha`` ≥ (a larger α
  rejects more).

Batching, compilation, diagnostics and skill-score settings never change a verdict and
are free. The profile's hash covers its name, :data:`RELEASE_VERSION` and the verdict
settings, so a change to the release rules (a new version) makes every earlier verdict
stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ._config import GateConfig

#: bumped whenever the release rules change; part of the profile hash. 1: the gates of
#: issue 16; 2: SBC also ranks the observation misfit (2026-12-07).
RELEASE_VERSION = 2
RELEASE = "release"
EXPLORATION = "exploration"
PROFILES = (RELEASE, EXPLORATION)

# setting -> how a candidate value compares with the release value to be at least as strict
_LE, _GE, _EQ = "<=", ">=", "=="
_RULES: dict[str, str] = {
    "tolerance_sigma": _LE, "min_fraction": _GE, "agreement_events": "none",
    "adjoint_threshold": _LE, "adjoint_tail": _LE, "adjoint_events": _GE,
    "adjoint_statistic": _EQ, "adjoint_hessian": _EQ, "adjoint_reference": "mcmc-or-auto",
    "adjoint_quantile": _GE, "n_probes": _GE, "power_steps": _GE,
    "sbc_runs": _GE, "sbc_draws": _GE, "sbc_bins": _EQ, "sbc_alpha": _GE,
}
#: the settings that decide a verdict (the rest: batching, compilation, diagnostics)
VERDICT_SETTINGS = tuple(_RULES)


def weaker_settings(config: GateConfig, release: GateConfig | None = None) -> list[str]:
    """Each verdict setting of ``config`` that is weaker than the release profile's, as
    ``"name value (release: value)"``; empty when ``config`` is at least as strict."""
    release = release or GateConfig()
    out = []
    for name, rule in _RULES.items():
        v, r = getattr(config, name), getattr(release, name)
        ok = {
            _LE: lambda: v <= r, _GE: lambda: v >= r, _EQ: lambda: v == r,
            "none": lambda: v is None,
            "mcmc-or-auto": lambda: v in ("auto", "mcmc"),
        }[rule]()
        if not ok:
            want = {"none": "None (all events)", "mcmc-or-auto": "'auto' or 'mcmc'"}.get(rule, f"{rule} {r!r}")
            out.append(f"{name} {v!r} (release: {want})")
    return out


@dataclasses.dataclass(frozen=True)
class GateProfile:
    """A named set of gate settings. ``name``: "release" or "exploration"; ``config``:
    the settings the gates run with. A release profile's settings are at least as
    strict as :class:`GateConfig`'s defaults (checked here)."""

    name: str
    config: GateConfig

    def __post_init__(self):
        if self.name not in PROFILES:
            raise ValueError(f"gate profile `name` must be one of {', '.join(PROFILES)}, got {self.name!r}")
        if self.name == RELEASE:
            weak = weaker_settings(self.config)
            if weak:
                raise ValueError("gate settings weaker than the release profile: " + "; ".join(weak)
                                 + " — use the 'exploration' profile to run them (it never certifies a head)")

    @property
    def certifies(self) -> bool:
        """Whether a pass under this profile may mark a head as passed (and promote it)."""
        return self.name == RELEASE

    @property
    def hash(self) -> str:
        """sha256 (12 hex) of the name, the release version and the verdict settings."""
        verdict = {k: getattr(self.config, k) for k in VERDICT_SETTINGS}
        payload = json.dumps({"name": self.name, "version": RELEASE_VERSION, "settings": verdict}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.name}@v{RELEASE_VERSION}"


def release_profile() -> GateProfile:
    """The release profile with the default settings."""
    return GateProfile(RELEASE, GateConfig())


def is_current_release(profile_name: str | None, version: str | int | None, settings_json: str | None) -> bool:
    """Whether a recorded verdict (its profile name, the profile's version and the JSON of
    its verdict settings) was reached under the current release rules: profile "release"
    of version :data:`RELEASE_VERSION` and settings at least as strict as the defaults."""
    if profile_name != RELEASE or str(version) != str(RELEASE_VERSION) or not settings_json:
        return False
    try:
        config = GateConfig.from_dict(json.loads(settings_json))
    except (ValueError, TypeError):
        return False
    return not weaker_settings(config)


def gates_source_hash() -> str:
    """sha256 (12 hex) of the source of ``vardax_core.gates`` (every module, by name): part
    of the pipeline's gate cache key, so that any change to the gates' code re-gates rather
    than reusing a cached verdict (the package version alone changes only at releases)."""
    from pathlib import Path

    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def verdict_settings_json(config: GateConfig) -> str:
    """The verdict settings of ``config`` as compact JSON (recorded with every verdict)."""
    return json.dumps({k: getattr(config, k) for k in VERDICT_SETTINGS}, sort_keys=True, separators=(",", ":"))
