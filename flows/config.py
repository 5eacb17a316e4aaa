"""Pipeline configuration: pydantic models (Prefect renders them as forms) and YAML loading.

A :class:`PipelineConfig` names the problem, dataset sizes and seeds, the oracle, the
heads to train with their hyperparameters, the gate settings, where stores live and
where MLflow tracks. Invalid values are refused before anything runs, with the
offending field named (``heads.0.type``, ``data.n_train``, …).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

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
        from vardax_core.problems import list_problems

        if self.name not in list_problems():
            raise ValueError(f"unknown problem {self.name!r}; choose one of {list_problems()}")
        self.build()  # raises naming a bad override
        return self

    def build(self):
        """The problem — built once per (name, overrides) in a process and shared by
        every step and config that names it (problems are immutable)."""
        return _built_problem(self.name, json.dumps(self.overrides, sort_keys=True))


@functools.lru_cache(maxsize=16)
def _built_problem(name: str, overrides_json: str):
    from vardax_core.problems import get_problem

    return get_problem(name, **json.loads(overrides_json))


class DataSpec(_Model):
    """Simulated datasets: ``n_train`` training pairs and ``n_heldout`` held-out events
    (solved by the oracle and used by the gates), each from its own seed."""

    n_train: PositiveInt = 10_000
    n_heldout: PositiveInt = 200
    chunk_size: PositiveInt = 2048
    seed: int = Field(0, ge=0)


# ---- typed sections, mirrored from vardax_core's own configs (flows/_sections.py) -------------

from vardax_core.amortized import (  # noqa: E402
    ENCODER_DEFAULTS,
    FLOW_DEFAULTS,
    GAUSSIAN_DEFAULTS,
    SCORE_DEFAULTS,
    ConsistencyConfig,
    SimulationBudget,
    TrainConfig,
)
from vardax_core.emulator import (  # noqa: E402
    EMULATOR_DEFAULTS,
    EmulatorGateConfig,
    EmulatorTrainConfig,
    resolve_emulator_config,
)
from vardax_core.gates import GateConfig  # noqa: E402
from vardax_core.oracle import IncrementalFourDVar, ReferenceConfig, StrongFourDVar  # noqa: E402

from ._sections import Section, mirror_dataclass, mirror_defaults, tagged_union  # noqa: E402

#: the 4DVar solvers by name, and their settings (the solver's own fields)
SOLVERS = {"strong": StrongFourDVar, "incremental": IncrementalFourDVar}
SOLVER_SETTINGS = {k: mirror_dataclass(c, name=f"{k.capitalize()}SolverSettings", tag=("solver", k))
                   for k, c in SOLVERS.items()}
ReferenceSection = mirror_dataclass(ReferenceConfig, name="ReferenceSection")
TrainSection = mirror_dataclass(TrainConfig, name="TrainSection")
SimulateSection = mirror_dataclass(SimulationBudget, name="SimulateSection")
ConsistencySection = mirror_dataclass(ConsistencyConfig, name="ConsistencySection")
GateSettings = mirror_dataclass(GateConfig, name="GateSettings")
EmulatorTrainSection = mirror_dataclass(EmulatorTrainConfig, name="EmulatorTrainSection")
EmulatorGateSection = mirror_dataclass(EmulatorGateConfig, name="EmulatorGateSection")
EmulatorModelSection = mirror_defaults("EmulatorModelSection", EMULATOR_DEFAULTS, resolve_emulator_config,
                                       doc="The emulator's architecture (vardax_core.emulator.EMULATOR_DEFAULTS).")
#: encoders by ``type`` (their fields: ``vardax_core.amortized.ENCODER_DEFAULTS``; checked
#: against the problem's observation shape by :class:`PipelineConfig`)
ENCODERS = {k: mirror_defaults(f"{k.capitalize()}Encoder", d, tag=("type", k),
                               doc=f"The {k!r} encoder of the observations (vardax_core.amortized).")
            for k, d in ENCODER_DEFAULTS.items()}
EncoderSection = tagged_union(ENCODERS, "type", default="mlp")
#: head architectures by head ``type`` (checked against the problem's state size by
#: :class:`PipelineConfig`)
HEAD_ARCHITECTURES = {
    "gaussian": mirror_defaults("GaussianArchitecture", GAUSSIAN_DEFAULTS, doc="A Gaussian head's architecture."),
    "flow": mirror_defaults("FlowArchitecture", FLOW_DEFAULTS, doc="A conditional flow head's architecture."),
    "score": mirror_defaults("ScoreArchitecture", SCORE_DEFAULTS, doc="A score diffusion head's architecture."),
}



def _export(*models: type[Section]) -> None:
    """Bind generated sections to this module under their names (pickle, Prefect and
    Dask find a class by module and name)."""
    for m in models:
        m.__module__ = __name__
        globals()[m.__name__] = m


_export(*SOLVER_SETTINGS.values(), ReferenceSection, TrainSection, SimulateSection, ConsistencySection, GateSettings,
        EmulatorTrainSection, EmulatorGateSection, EmulatorModelSection, *ENCODERS.values(),
        *HEAD_ARCHITECTURES.values())


class OracleSpec(_Model):
    """Step 2: the 4DVar oracle (``solver`` with its ``settings``, ``n_starts``) on the
    held-out events, ``chunk_size`` events per task on ``workers`` workers.
    ``reference``: when set (``ReferenceConfig`` fields, ``{}`` for its defaults), every
    event also gets its exact posterior by MCMC from the 4DVar MAP (mean, std, draws,
    diagnostics and the posterior-mean Jacobian), which the gates then use as their
    reference; ``reference_seed`` seeds the chains."""

    solver: Literal["strong", "incremental"] = "incremental"
    settings: tagged_union(SOLVER_SETTINGS, "solver") = None  # type: ignore[valid-type]
    n_starts: PositiveInt = 1
    chunk_size: PositiveInt = 100
    workers: PositiveInt = 2
    reference: ReferenceSection | None = None  # type: ignore[valid-type]
    reference_seed: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _settings_of_the_solver(cls, data):
        """``settings`` are the chosen solver's: its name is the variant's tag."""
        if isinstance(data, dict):
            data = dict(data)
            solver = data.get("solver", "incremental")
            settings = data.get("settings") or {}
            if isinstance(settings, dict):
                if settings.get("solver", solver) != solver:
                    raise ValueError(f"settings.solver {settings['solver']!r} is not the oracle's solver {solver!r}")
                data["settings"] = {**settings, "solver": solver}
        return data

    def reference_config(self):
        """The validated ``ReferenceConfig`` (None when no reference is asked for)."""
        return None if self.reference is None else self.reference.core()

    def solver_instance(self):
        """The configured 4DVar solver (``MultiStart`` over it when ``n_starts > 1``)."""
        from vardax_core.oracle import MultiStart

        solver = self.settings.core()
        return MultiStart(solver, n_starts=self.n_starts) if self.n_starts > 1 else solver


class _HeadBase(_Model):
    """One amortized head: its encoder, architecture (``head``) and training."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    encoder: EncoderSection = Field(default_factory=ENCODERS["mlp"])  # type: ignore[valid-type]
    train: TrainSection = Field(default_factory=TrainSection)  # type: ignore[valid-type]
    seed: int = Field(0, ge=0)
    #: Train on fresh pairs drawn on the fly from the problem's (physics) simulator
    #: instead of the ``pairs-train`` store (``SimulationBudget`` fields).
    simulate: SimulateSection | None = None  # type: ignore[valid-type]
    #: With ``simulate``: the Jacobian-consistency penalty of the Gaussian-noise identity
    #: (``ConsistencyConfig`` fields); None = off.
    consistency: ConsistencySection | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _consistency_needs_simulate(self):
        if self.consistency is not None and self.simulate is None:
            raise ValueError(f"head {self.name!r}: `consistency` needs `simulate` (it trains on fresh pairs)")
        return self

    def model_config_dict(self) -> dict:
        """The ``vardax_core.amortized.build_posterior`` config of this head."""
        return {"encoder": self.encoder.model_dump(), "head": {"type": self.type, **self.head.settings()}}


class GaussianHeadSpec(_HeadBase):
    """A Gaussian head (mean and covariance of the posterior)."""

    type: Literal["gaussian"]
    head: HEAD_ARCHITECTURES["gaussian"] = Field(default_factory=HEAD_ARCHITECTURES["gaussian"])  # type: ignore


class FlowHeadSpec(_HeadBase):
    """A conditional normalising-flow head."""

    type: Literal["flow"]
    head: HEAD_ARCHITECTURES["flow"] = Field(default_factory=HEAD_ARCHITECTURES["flow"])  # type: ignore


class ScoreHeadSpec(_HeadBase):
    """A score-based diffusion head."""

    type: Literal["score"]
    head: HEAD_ARCHITECTURES["score"] = Field(default_factory=HEAD_ARCHITECTURES["score"])  # type: ignore


#: one head, by ``type``
HeadSpec = Annotated[GaussianHeadSpec | FlowHeadSpec | ScoreHeadSpec, Field(discriminator="type")]
_HEAD_ADAPTER = TypeAdapter(HeadSpec)


def head_spec(**fields) -> GaussianHeadSpec | FlowHeadSpec | ScoreHeadSpec:
    """A validated head section from its fields (``type`` picks the variant)."""
    return _HEAD_ADAPTER.validate_python(fields)


class GateSpec(_Model):
    """Gate settings (``GateConfig`` fields, defaults from DESIGN.md); passed to
    ``vardax_core.gates``. An unknown key or an invalid value is refused by name when the
    config is loaded.

    ``profile``: "release" (default) — the settings must be at least as strict as the
    defaults, and a pass certifies the head (``gates_passed=true``, promotable);
    "exploration" — any valid settings, the verdict is recorded under ``exploration.*``
    tags only and never certifies or promotes (``vardax_core.gates.GateProfile``)."""

    profile: Literal["release", "exploration"] = "release"
    settings: GateSettings = Field(default_factory=GateSettings)  # type: ignore[valid-type]
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _valid_settings(self):
        self.gate_profile()
        return self

    def gate_profile(self):
        """The typed :class:`vardax_core.gates.GateProfile` of this section."""
        from vardax_core.gates import GateProfile

        return GateProfile(self.profile, self.settings.core())


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
    model: EmulatorModelSection = Field(default_factory=EmulatorModelSection)  # type: ignore[valid-type]
    train: EmulatorTrainSection = Field(default_factory=EmulatorTrainSection)  # type: ignore[valid-type]
    gates: EmulatorGateSection = Field(default_factory=EmulatorGateSection)  # type: ignore[valid-type]
    agreement: GateSettings | None = None  # type: ignore[valid-type]
    seed: int = Field(0, ge=0)
    gate_seed: int = Field(0, ge=0)
    registered_model: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    train_pairs: bool = False


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
    def _heads_fit_the_problem(self):
        """Every head's encoder and architecture resolved against the problem's shapes
        (``vardax_core.amortized.resolve_model_config``), so that a value this problem
        cannot take is refused at load, naming the head."""
        from vardax_core.amortized import layout_of, resolve_model_config

        layout = layout_of(self.problem.build())
        for i, head in enumerate(self.heads):
            try:
                resolve_model_config(head.model_config_dict(), layout)
            except ValueError as e:
                raise ValueError(f"heads.{i} ({head.name}): {e}") from None
        return self

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


def read_yaml_config(name_or_path: str | os.PathLike, directory: Path = CONFIG_DIR, what: str = "config") -> dict:
    """The YAML mapping at a path, or of the file ``<name>.yaml`` in ``directory``."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = directory / f"{name_or_path}.yaml"
        if not candidate.exists():
            available = sorted(p.stem for p in directory.glob("*.yaml"))
            raise ConfigError(f"no {what} file {str(name_or_path)!r} (named {what}s: {available})")
        path = candidate
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return data


def load_config(name_or_path: str | os.PathLike) -> PipelineConfig:
    """Load a YAML config by path or by name from ``configs/`` (``"lorenz96"``)."""
    return parse_config(read_yaml_config(name_or_path))
