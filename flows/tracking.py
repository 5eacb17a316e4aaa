"""MLflow glue: tracking set-up, training runs, the pyfunc model, and registry semantics.

Registry contract (DESIGN.md): one registered model per problem; every trained head is
a new version tagged with its head type, dataset hashes and gate outcomes; the alias
``challenger`` marks the newest candidate; ``champion`` moves only to a version whose
three gates passed and otherwise stays where it is.
"""

from __future__ import annotations

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
PYFUNC_REQUIREMENTS = ["vardax_core"]


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


def log_pyfunc(posterior_dir: str) -> str:
    """Log the saved posterior as a ``pyfunc`` model of the active run; returns its URI."""
    code = str(Path(__file__).with_name("_pyfunc_model.py"))
    with warnings.catch_warnings():
        # the predict input is a dict of arrays, which MLflow's type-hint schemas cannot describe
        warnings.filterwarnings("ignore", message=".*[Tt]ype hint.*")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=code,
            artifacts={"posterior": posterior_dir},
            pip_requirements=PYFUNC_REQUIREMENTS,
        )
    return info.model_uri


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
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    mv = client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return str(mv.version)


def tag_gate_outcomes(client: MlflowClient, ref: ModelRef, gates: dict[str, bool]) -> None:
    for gate, passed in gates.items():
        client.set_model_version_tag(ref.name, ref.version, f"{GATE_TAG_PREFIX}{gate}", "passed" if passed else "failed")
    client.set_model_version_tag(ref.name, ref.version, "gates_passed", str(all(gates.values())).lower())


def version_passed_all_gates(client: MlflowClient, name: str, version: str) -> bool:
    return client.get_model_version(name, version).tags.get("gates_passed") == "true"


def current_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_champion(client: MlflowClient, name: str, version: str) -> None:
    """Move ``champion`` to ``version`` — refused unless its three gates passed."""
    if not version_passed_all_gates(client, name, version):
        raise ValueError(f"version {version} of {name!r} has not passed all gates; champion stays")
    client.set_registered_model_alias(name, CHAMPION, version)


def load_posterior(model_uri: str):
    """The vardax_core posterior inside a logged pyfunc model."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().posterior


def registry_status(client: MlflowClient, name: str) -> dict:
    """Versions with their tags and aliases, and the champion/challenger."""
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
