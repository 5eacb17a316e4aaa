"""MLflow glue: tracking set-up, training runs, the pyfunc model, and registry semantics.

Registry contract (DESIGN.md): one registered model per problem; every trained head is
a new version tagged with its head type, dataset hashes and gate outcomes; the alias
``challenger`` marks the newest candidate; ``champion`` moves only to a version whose
three gates passed and otherwise stays where it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .config import PipelineConfig
from .refs import DatasetRef, ModelRef

CHAMPION, CHALLENGER = "champion", "challenger"
GATE_TAG_PREFIX = "gate."


def configure(config: PipelineConfig) -> MlflowClient:
    """Point MLflow at the config's tracking URI and make sure the experiment exists."""
    uri = config.tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = config.experiment_name()
    if mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(name, artifact_location=config.artifact_root())
        except MlflowException:  # created concurrently
            pass
    mlflow.set_experiment(name)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


#: seconds between system-metric samples (CPU, memory, disk) of training runs
SYSTEM_METRICS_INTERVAL = 2.0


@contextlib.contextmanager
def training_run(config: PipelineConfig, run_name: str):
    """An MLflow run for training: system metrics sampled every
    :data:`SYSTEM_METRICS_INTERVAL` s, and the resolved pipeline config logged as
    ``config/pipeline.json`` (what the run was asked to do, validated)."""
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL)
    with mlflow.start_run(run_name=run_name, log_system_metrics=True) as run:
        mlflow.log_text(config.model_dump_json(indent=2), "config/pipeline.json")
        yield run


def flat_params(prefix: str, d: Any) -> dict[str, str]:
    """Flatten nested config dicts into MLflow params (``head.covariance`` → ``full``)."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flat_params(f"{prefix}.{k}" if prefix else str(k), v))
    else:
        out[prefix] = json.dumps(d) if isinstance(d, (list, tuple)) else str(d)
    return out


def log_dataset_input(ref: DatasetRef, context: str) -> None:
    """Record a Zarr store as an MLflow dataset input (lineage) of the active run."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # local paths resolve to one of two equivalent sources
        source = resolve_dataset_source(Path(ref.path).resolve().as_uri() if "://" not in ref.path else ref.path)
    mlflow.log_input(MetaDataset(source=source, name=ref.kind, digest=ref.hash), context=context)


#: dependencies of vardax_core that a logged model does not need (the pipeline's)
PIPELINE_ONLY = {"prefect", "mlflow", "fastapi", "prefect-dask", "distributed"}


def model_requirements() -> list[str]:
    """The pip requirements of a logged model: vardax_core's own runtime dependencies and
    MLflow, pinned to the versions installed here (every name installable from a package
    index; vardax_core itself travels in the model's ``code/`` folder)."""
    import importlib.metadata as md
    import re

    names = []
    for req in md.requires("vardax_core") or []:
        if ";" in req:  # extras (dev, notebooks)
            continue
        name = re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].strip()
        if name.lower() not in PIPELINE_ONLY:
            names.append(name)
    return [f"{n}=={md.version(n)}" for n in names + ["mlflow"]]


def head_signature(problem):
    """The tensor signature of a head's ``predict``: ``y`` float64 and ``mask`` bool
    (-1, T, *obs) in; ``mean``, ``std`` float64 (-1, *state) out; params ``n_samples``
    and ``seed`` (integers, default 0)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    y_shape = (-1, *problem.y_shape)
    x_shape = (-1, *problem.state_shape)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float64"), y_shape, "y"), TensorSpec(np.dtype("bool"), y_shape, "mask")]),
        outputs=Schema([TensorSpec(np.dtype("float64"), x_shape, "mean"),
                        TensorSpec(np.dtype("float64"), x_shape, "std")]),
        params=ParamSchema([ParamSpec("n_samples", "long", 0), ParamSpec("seed", "long", 0)]),
    )


def emulator_signature(problem):
    """``x`` float64 (-1, *state) in, ``x_next`` float64 (-1, *state) out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    shape = (-1, *problem.state_shape)
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), shape, "x")]),
                          outputs=Schema([TensorSpec(np.dtype("float64"), shape, "x_next")]))


def log_pyfunc(kind: str, path: str, problem) -> str:
    """Log a saved head (``kind="posterior"``) or emulator (``"emulator"``) as the one
    vardax ``pyfunc`` model (``flows/_pyfunc_model.py``) of the active run, with its tensor
    signature, an input example, pinned requirements and vardax_core in ``code/``;
    returns its URI."""
    import shutil

    import numpy as np

    import vardax_core

    if kind == "posterior":
        signature = head_signature(problem)
        example = {"y": np.zeros((1, *problem.y_shape)), "mask": np.ones((1, *problem.y_shape), bool)}
    elif kind == "emulator":
        signature = emulator_signature(problem)
        example = {"x": np.asarray(problem.prior.mean, np.float64)[None]}
    else:
        raise ValueError(f"`kind` must be 'posterior' or 'emulator', got {kind!r}")
    code = str(Path(__file__).with_name("_pyfunc_model.py"))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        package = Path(tmp) / "vardax_core"
        shutil.copytree(Path(vardax_core.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
        # the predict input is a dict of arrays, which MLflow's type-hint schemas cannot describe
        warnings.filterwarnings("ignore", message=".*[Tt]ype hint.*")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=code, artifacts={kind: path}, signature=signature, input_example=example,
            pip_requirements=model_requirements(), code_paths=[str(package)],
        )
    return info.model_uri


def load_model_object(model_uri: str):
    """The vardax_core object (posterior or emulator) inside a logged vardax pyfunc model."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().obj


def model_id_of(model_uri: str) -> str | None:
    """The MLflow 3 logged-model id of a ``models:/m-…`` URI (None for other URIs)."""
    return model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None


def register_version(client: MlflowClient, config: PipelineConfig, model_uri: str, run_id: str, tags: dict[str, str]) -> str:
    """Register ``model_uri`` as a new version of the problem's amortized-posterior model."""
    return register_model_version(client, config.registered_model_name(),
                                  f"amortized posteriors for problem {config.problem.name}", model_uri, run_id, tags)


def register_model_version(client: MlflowClient, name: str, description: str, model_uri: str, run_id: str,
                           tags: dict[str, str]) -> str:
    """Register ``model_uri`` as a new version of ``name`` (created with ``description`` if
    needed), tag it and make it the ``challenger``; returns the version."""
    try:
        client.create_registered_model(name, description=description)
    except MlflowException:
        pass  # exists
    # MLflow 3 logs models as `models:/<model_id>`; a tracking server accepts that source
    # only together with the model id (a local store infers it)
    model_id = model_id_of(model_uri)
    mv = client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return str(mv.version)


def tag_gate_outcomes(client: MlflowClient, ref: ModelRef, gates: dict[str, bool]) -> None:
    for gate, passed in gates.items():
        client.set_model_version_tag(ref.name, ref.version, f"{GATE_TAG_PREFIX}{gate}", "passed" if passed else "failed")
    client.set_model_version_tag(ref.name, ref.version, "gates_passed", str(all(gates.values())).lower())


def version_passed_all_gates(client: MlflowClient, name: str, version: str) -> bool:
    return client.get_model_version(name, version).tags.get("gates_passed") == "true"


# ---- the heads' verdicts: gate profile, problem and code version ---------------------------

EXPLORATION_PREFIX = "exploration."


def tag_head_verdict(client: MlflowClient, ref: ModelRef, gates: dict[str, bool], profile, problem_hash: str,
                     reference: str, oracle_hash: str) -> None:
    """Record a head's gate verdict on its model version. Under a certifying (release)
    ``profile``: ``gate.<name>``, ``gates_passed`` and the ``gate_*`` tags of what it rests
    on (the profile, its version, hash and verdict settings, the code version, the problem
    hash, the reference, the oracle store and the gates' source hash). Under the
    exploration profile the same under ``exploration.*`` only: the release verdict is
    never touched."""
    from vardax_core import __version__
    from vardax_core.gates import RELEASE_VERSION, gates_source_hash, verdict_settings_json

    tags = {f"{GATE_TAG_PREFIX}{g}": "passed" if ok else "failed" for g, ok in gates.items()}
    tags.update({
        "gates_passed": str(all(gates.values())).lower(), "gate_profile": profile.name,
        "gate_profile_version": str(RELEASE_VERSION), "gate_profile_hash": profile.hash,
        "gate_settings": verdict_settings_json(profile.config), "gate_code_version": __version__,
        "gate_problem_hash": problem_hash, "gate_reference": reference, "gate_oracle_hash": oracle_hash,
        "gate_source_hash": gates_source_hash(),
    })
    prefix = "" if profile.certifies else EXPLORATION_PREFIX
    for k, v in tags.items():
        client.set_model_version_tag(ref.name, ref.version, prefix + k, v)


def head_verdict_problems(tags: dict[str, str], problem_hash: str | None = None) -> list[str]:
    """Why a head version's tags are not a current passing verdict (empty when they are):
    all three gates passed under the current release gate profile, with this code
    version, on the problem ``problem_hash`` (the registered model's, when given)."""
    from vardax_core import __version__
    from vardax_core.gates import RELEASE, RELEASE_VERSION, is_current_release

    why = []
    if tags.get("gates_passed") != "true":
        why.append(f"gates_passed is {tags.get('gates_passed', 'missing')!r}")
    if not is_current_release(tags.get("gate_profile"), tags.get("gate_profile_version"), tags.get("gate_settings")):
        why.append(f"its verdict is not one of the current release gate profile ({RELEASE} v{RELEASE_VERSION}): "
                   f"profile {tags.get('gate_profile', 'missing')!r} v{tags.get('gate_profile_version', '?')}")
    if tags.get("gate_code_version") != __version__:
        why.append(f"it was gated by vardax_core {tags.get('gate_code_version', 'unknown')}, this is {__version__}")
    if problem_hash is not None:
        for key in ("problem_hash", "gate_problem_hash"):
            if tags.get(key) != problem_hash:
                why.append(f"its {key} {tags.get(key, 'missing')!r} is not the problem's {problem_hash!r}")
    return why


def champion_events(client: MlflowClient, name: str) -> list[dict]:
    """The recorded champion events of ``name`` (newest last)."""
    try:
        raw = client.get_registered_model(name).tags.get("champion_events")
    except MlflowException:
        return []
    return json.loads(raw) if raw else []


def record_champion_event(client: MlflowClient, name: str, event: dict, keep: int = 20) -> None:
    """Append ``event`` (with a UTC time) to the registered model's ``champion_events``
    tag (the last ``keep``)."""
    from datetime import datetime, timezone

    events = champion_events(client, name) + [{"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                **event}]
    value = json.dumps(events[-keep:])
    while len(value) > 4900 and len(events) > 1:  # MLflow's tag value limit
        events = events[1:]
        value = json.dumps(events[-keep:])
    client.set_registered_model_tag(name, "champion_events", value)


def best_current_version(client: MlflowClient, name: str, problem_hash: str, exclude: str | None = None) -> str | None:
    """The version with a current passing verdict and the lowest held-out energy score
    (``gate.scores.energy_score`` of its run; versions without one rank last, newer
    first among equals), other than ``exclude``."""
    try:
        versions = client.search_model_versions(f"name='{name}' and tags.gates_passed='true'")
    except MlflowException:
        return None
    ranked = []
    for mv in versions:
        if str(mv.version) == exclude or head_verdict_problems(mv.tags, problem_hash):
            continue
        score = client.get_run(mv.run_id).data.metrics.get("gate.scores.energy_score") if mv.run_id else None
        ranked.append((score is None, score or 0.0, -int(mv.version), str(mv.version)))
    return min(ranked)[-1] if ranked else None


def demote_champion(client: MlflowClient, name: str, version: str, reason: str, problem_hash: str) -> str | None:
    """If ``version`` is the champion: move the alias to the best remaining version with a
    current passing verdict, or remove it; record the event. Returns the champion after."""
    if current_alias(client, name, CHAMPION) != str(version):
        return current_alias(client, name, CHAMPION)
    successor = best_current_version(client, name, problem_hash, exclude=str(version))
    if successor is None:
        client.delete_registered_model_alias(name, CHAMPION)
    else:
        client.set_registered_model_alias(name, CHAMPION, successor)
    client.set_model_version_tag(name, version, "demoted", reason)
    record_champion_event(client, name, {"event": "demoted", "version": str(version), "champion": successor,
                                         "reason": reason})
    return successor


def current_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_champion(client: MlflowClient, name: str, version: str, problem_hash: str | None = None,
                 reason: str = "", head: bool = True) -> None:
    """Move ``champion`` to ``version`` — refused unless it has a current passing verdict
    (a head: :func:`head_verdict_problems` on ``problem_hash``; an emulator: its gates
    passed); the move is recorded as a champion event."""
    if head:
        why = head_verdict_problems(client.get_model_version(name, version).tags, problem_hash)
    else:
        why = [] if version_passed_all_gates(client, name, version) else ["it has not passed all gates"]
    if why:
        raise ValueError(f"version {version} of {name!r} cannot be champion: {'; '.join(why)}; champion stays")
    previous = current_alias(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    if previous != str(version):
        record_champion_event(client, name, {"event": "promoted", "version": str(version), "previous": previous,
                                             "reason": reason})


def load_posterior(model_uri: str):
    """The vardax_core posterior inside a logged pyfunc model."""
    return load_model_object(model_uri)


def registry_status(client: MlflowClient, name: str, problem_hash: str | None = None) -> dict:
    """Versions with their tags and aliases, and the champion/challenger; ``current``:
    what keeps each version's verdict from being a current pass on ``problem_hash``
    (empty list: it is one)."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    aliases = {a: current_alias(client, name, a) for a in (CHAMPION, CHALLENGER)}
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
                "head": mv.tags.get("head_name", ""),
                "head_type": mv.tags.get("head_type", ""),
                "gates": {k[len(GATE_TAG_PREFIX):]: v for k, v in mv.tags.items() if k.startswith(GATE_TAG_PREFIX)},
                "gates_passed": mv.tags.get("gates_passed", "pending"),
                "profile": mv.tags.get("gate_profile", "-"),
                "current": head_verdict_problems(mv.tags, problem_hash),
                "run_id": mv.run_id,
            }
        )
    return {
        "model": name,
        "champion": aliases[CHAMPION],
        "challenger": aliases[CHALLENGER],
        "versions": rows,
    }


def artifacts_tmpdir() -> tempfile.TemporaryDirectory:
    root = os.environ.get("VARDAX_HOME")
    if root:
        Path(root, "tmp").mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=Path(root, "tmp"))
    return tempfile.TemporaryDirectory()


def find_version(client: MlflowClient, name: str, tag: str, value: str) -> str | None:
    """The newest version of ``name`` whose tag ``tag`` equals ``value``, if any."""
    try:
        versions = client.search_model_versions(f"name='{name}' and tags.`{tag}`='{value}'")
    except MlflowException:
        return None
    return str(max(int(v.version) for v in versions)) if versions else None
