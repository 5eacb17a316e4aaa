"""Pipeline configuration: pydantic models (Prefect renders them as forms) and YAML loading.

A :class:`PipelineConfig` names the problem, dataset sizes and seeds, the oracle, the
heads to train with their hyperparameters, the gate settings, where stores live and
where MLflow tracks. Invalid values are refused before anything runs, with the
offending field named (``heads.0.type``, ``data.n_train``, …).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def vardax_home() -> Path:
    """The project-local home for stores, Prefect and MLflow state (``$VARDAX_HOME``)."""
    return Path(os.environ.get("VARDAX_HOME", Path.cwd() / ".vardax")).resolve()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemSpec(_Model):
    """A registered problem and overrides of its defaults."""

    name: str = "lorenz96"
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _builds(self):
        from vardax_core.problems import get_problem, list_problems

        if self.name not in list_problems():
            raise ValueError(f"unknown problem {self.name!r}; choose one of {list_problems()}")
        get_problem(self.name, **self.overrides)  # raises naming a bad override
        return self

    def build(self):
        from vardax_core.problems import get_problem

        return get_problem(self.name, **self.overrides)


class DataSpec(_Model):
    """Simulated datasets: ``n_train`` training pairs and ``n_heldout`` held-out events
    (solved by the oracle and used by the gates), each from its own seed."""

    n_train: PositiveInt = 10_000
    n_heldout: PositiveInt = 200
    chunk_size: PositiveInt = 2048
    seed: int = Field(0, ge=0)


class OracleSpec(_Model):
    """Step 2: the 4DVar oracle (``solver`` with ``settings``, ``n_starts``) on the
    held-out events, ``chunk_size`` events per task on ``workers`` workers.
    ``reference``: when set (a mapping of ``vardax_core.oracle.ReferenceConfig`` fields,
    ``{}`` for its defaults), every event also gets its exact posterior by MCMC from the
    4DVar MAP (mean, std, draws, diagnostics and the posterior-mean Jacobian), which the
    gates then use as their reference; ``reference_seed`` seeds the chains."""

    solver: Literal["strong", "incremental"] = "incremental"
    settings: dict[str, Any] = Field(default_factory=dict)
    n_starts: PositiveInt = 1
    chunk_size: PositiveInt = 100
    workers: PositiveInt = 2
    reference: dict[str, Any] | None = None
    reference_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _valid_reference(self):
        self.reference_config()
        return self

    def reference_config(self):
        """The validated ``ReferenceConfig`` (None when no reference is asked for)."""
        if self.reference is None:
            return None
        from vardax_core.oracle import ReferenceConfig

        return ReferenceConfig.from_dict(self.reference)


class HeadSpec(_Model):
    """One amortized head: its architecture (``encoder``, ``head``) and training."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["gaussian", "flow", "score"]
    encoder: dict[str, Any] = Field(default_factory=dict)
    head: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0)
    #: Train on fresh pairs drawn on the fly from the problem's (physics) simulator
    #: instead of the ``pairs-train`` store: ``vardax_core.amortized.SimulationBudget``
    #: fields (``n_pairs``, ``epoch_pairs``, ``n_val``, ``n_standardize``).
    simulate: dict[str, Any] | None = None
    #: With ``simulate``: the Jacobian-consistency penalty of the Gaussian-noise identity
    #: (``vardax_core.amortized.ConsistencyConfig`` fields: ``weight``, ``n_events``,
    #: ``n_samples``); None = off.
    consistency: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _valid_simulate(self):
        from vardax_core.amortized import ConsistencyConfig, SimulationBudget

        if self.simulate is not None:
            SimulationBudget.from_dict(self.simulate)
        if self.consistency is not None:
            if self.simulate is None:
                raise ValueError(f"head {self.name!r}: `consistency` needs `simulate` (it trains on fresh pairs)")
            ConsistencyConfig.from_dict(self.consistency)
        return self


class GateSpec(_Model):
    """Gate settings (defaults from DESIGN.md); passed to ``vardax_core.gates``. Checked
    when the config is loaded: an unknown key or an invalid value is refused by name
    before anything runs.

    ``profile``: "release" (default) — the settings must be at least as strict as the
    defaults, and a pass certifies the head (``gates_passed=true``, promotable);
    "exploration" — any valid settings, the verdict is recorded under ``exploration.*``
    tags only and never certifies or promotes (``vardax_core.gates.GateProfile``)."""

    profile: Literal["release", "exploration"] = "release"
    settings: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _valid_settings(self):
        self.gate_profile()
        return self

    def gate_profile(self):
        """The typed :class:`vardax_core.gates.GateProfile` of this section."""
        from vardax_core.gates import GateConfig, GateProfile

        return GateProfile(self.profile, GateConfig.from_dict(self.settings))


class EmulatorSpec(_Model):
    """Steps 3–4 (optional, off unless the section is present and ``enabled``): a neural
    emulator of the problem's forward model, trained by the ``train-emulator`` flow and
    gated on forward and Jacobian error (``vardax_core.emulator``), then — in the cycle —
    the oracle's 4DVar run with ``forward=emulator`` on the held-out events and gated
    against the physics oracle's posteriors (agreement within 1σ).

    ``model``: architecture (``vardax_core.emulator.EMULATOR_DEFAULTS``); ``train``:
    ``EmulatorTrainConfig`` fields; ``gates``: ``EmulatorGateConfig`` fields;
    ``agreement``: ``GateConfig`` fields of the emulator-based oracle's agreement gate
    (default: the ``gates.settings`` of the heads); ``seed``: initial weights and
    training draws; ``gate_seed``: held-out states and probes of the emulator gates;
    ``registered_model``: default ``vardax-<problem>-emulator``.

    ``train_pairs``: simulate the heads' training pairs with the emulator (step 3 feeding
    step 5; same size and seed as the physics pairs) — used only when the emulator passed
    both its gates, otherwise the heads train on physics pairs and the cycle says why. The
    held-out events, the oracle and the heads' gates stay physics: a head trained on
    emulated pairs is gated against the physics oracle like any other.
    """

    enabled: bool = True
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    gates: dict[str, Any] = Field(default_factory=dict)
    agreement: dict[str, Any] | None = None
    seed: int = Field(0, ge=0)
    gate_seed: int = Field(0, ge=0)
    registered_model: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    train_pairs: bool = False

    @model_validator(mode="after")
    def _valid_settings(self):
        from vardax_core.emulator import EmulatorGateConfig, EmulatorTrainConfig, resolve_emulator_config
        from vardax_core.gates import GateConfig

        resolve_emulator_config(self.model)  # each raises naming the bad key or value
        EmulatorTrainConfig.from_dict(self.train)
        EmulatorGateConfig.from_dict(self.gates)
        if self.agreement is not None:
            GateConfig.from_dict(self.agreement)
        return self


class TrackingSpec(_Model):
    """MLflow: tracking URI (default SQLite under ``$VARDAX_HOME/mlflow``), artifact root,
    experiment and registered-model names (default ``vardax-<problem>``)."""

    uri: str | None = None
    artifact_root: str | None = None
    experiment: str | None = None
    registered_model: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")


class PipelineConfig(_Model):
    name: str = "default"
    problem: ProblemSpec = Field(default_factory=ProblemSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    oracle: OracleSpec = Field(default_factory=OracleSpec)
    heads: list[HeadSpec] = Field(min_length=1)
    gates: GateSpec = Field(default_factory=GateSpec)
    store_root: str | None = None
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    emulator: EmulatorSpec | None = None

    @model_validator(mode="after")
    def _emulator_fits_the_problem(self):
        if self.emulator is not None:
            shape = self.problem.build().state_shape
            if len(shape) != 1:
                raise ValueError(f"emulator: the conv emulator needs a 1D (ring) state; problem "
                                 f"{self.problem.name!r} has state shape {shape}")
        return self

    @field_validator("heads")
    @classmethod
    def _unique_head_names(cls, heads):
        names = [h.name for h in heads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"head names must be unique, repeated: {dup}")
        return heads

    # ---- resolved locations ---------------------------------------------------------
    def resolved_store_root(self) -> str:
        return self.store_root or str(vardax_home() / "stores")

    def tracking_uri(self) -> str:
        if self.tracking.uri:
            return self.tracking.uri
        return f"sqlite:///{vardax_home() / 'mlflow' / 'mlflow.db'}"

    def artifact_root(self) -> str | None:
        """Where new experiments keep artifacts: the configured root, else a local folder
        for a local (SQLite) store, else None — a tracking server decides (it proxies
        artifacts to its ``--artifacts-destination``)."""
        if self.tracking.artifact_root:
            return self.tracking.artifact_root
        if self.tracking_uri().startswith(("http://", "https://")):
            return None
        return (vardax_home() / "mlflow" / "artifacts").as_uri()

    def experiment_name(self) -> str:
        return self.tracking.experiment or f"vardax-{self.problem.name}"

    def registered_model_name(self) -> str:
        return self.tracking.registered_model or f"vardax-{self.problem.name}"

    def emulator_enabled(self) -> bool:
        """Whether the cycle runs steps 3–4 (an ``emulator`` section with ``enabled``)."""
        return self.emulator is not None and self.emulator.enabled

    def emulator_train_pairs(self) -> bool:
        """Whether the heads are to train on emulator-simulated pairs (the emulator step
        runs and ``emulator.train_pairs`` is set; the cycle still falls back to physics
        pairs when the emulator fails its gates)."""
        return self.emulator_enabled() and self.emulator.train_pairs

    def emulator_model_name(self) -> str:
        """The registered model of the problem's emulators (``vardax-<problem>-emulator``)."""
        spec = self.emulator or EmulatorSpec()
        return spec.registered_model or f"vardax-{self.problem.name}-emulator"

    def section_hash(self, *parts: str) -> str:
        """Hash of the named config sections (the cache key of a step's settings)."""
        data = {p: self.model_dump(mode="json")[p] for p in parts}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field."""


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {loc}: {e['msg']}")
    return "invalid pipeline config:\n" + "\n".join(lines)


def named_configs() -> tuple[str, ...]:
    """The names of the configs in ``configs/`` (``lorenz96``, ``smoke``, …)."""
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))


#: a named config, as a type: Prefect's run form shows it as a drop-down list
ConfigName = Literal[named_configs()]  # type: ignore[valid-type]


def with_overrides(config: PipelineConfig, overrides: dict[str, Any] | None) -> PipelineConfig:
    """``config`` with a few fields set by dotted path — ``{"data.n_train": 5000,
    "heads.0.train.max_epochs": 5, "gates.seed": 1}`` — and validated again as a whole.
    Every segment but the last must exist (list entries by index); a wrong path or an
    invalid value raises :class:`ConfigError` naming it."""
    data = config.model_dump(mode="json")
    for path, value in (overrides or {}).items():
        keys = str(path).split(".")
        node = data
        for i, k in enumerate(keys[:-1]):
            if isinstance(node, list) and k.isdigit() and int(k) < len(node):
                node = node[int(k)]
            elif isinstance(node, dict) and isinstance(node.get(k), (dict, list)):
                node = node[k]
            else:
                raise ConfigError(f"override {path!r}: no section {'.'.join(keys[:i + 1])!r} in config {config.name!r}")
        last = keys[-1]
        if isinstance(node, list):
            if not (last.isdigit() and int(last) < len(node)):
                raise ConfigError(f"override {path!r}: {'.'.join(keys[:-1])!r} has {len(node)} entries")
            node[int(last)] = value
        else:
            node[last] = value
    return parse_config(data)


def parse_config(data: dict) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def load_config(name_or_path: str | os.PathLike) -> PipelineConfig:
    """Load a YAML config by path or by name from ``configs/`` (``"lorenz96"``)."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = CONFIG_DIR / f"{name_or_path}.yaml"
        if not candidate.exists():
            available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"no config file {str(name_or_path)!r} (named configs: {available})")
        path = candidate
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return parse_config(data)
