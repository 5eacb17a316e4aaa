"""Saving and loading trained amortized posteriors (weights + JSON config + version)."""

from __future__ import annotations

import numpy as np

from ..problems import Problem
from ._posterior import FORMAT_VERSION, AmortizedPosterior, posterior_skeleton
from ._serial import read_blob, read_header, write_blob

KIND = "vardax-amortized-posterior"


def save_posterior(path: str, posterior: AmortizedPosterior) -> str:
    """Write ``posterior`` to one file: a JSON header (format version, the full config —
    problem config and hash, layout, encoder, head, dtype, training provenance — and the
    standardisation statistics) followed by the weights (``eqx.tree_serialise_leaves``).
    The write is atomic. Returns ``path``."""
    header = {"config": posterior.config, "standardization": posterior.standardizer.to_dict()}
    write_blob(path, posterior, header, kind=KIND, version=FORMAT_VERSION)
    return str(path)


def read_posterior_config(path: str) -> dict:
    """The stored config of a saved posterior, without loading the weights."""
    return read_header(path, kind=KIND, version=FORMAT_VERSION)[0]["config"]


def load_posterior(path: str, problem: Problem | None = None) -> AmortizedPosterior:
    """Load a posterior saved by :func:`save_posterior`; outputs are bitwise identical
    to the saved model's. The skeleton is rebuilt from the stored config
    (:func:`posterior_from_config`). A file of another format version, a config this code
    cannot build, weights that do not fit it, or (with ``problem``) a different problem
    hash raise ``ValueError`` with the reason."""
    header, _ = read_header(path, kind=KIND, version=FORMAT_VERSION)
    config = header["config"]
    if problem is not None and config.get("problem_hash") != problem.hash:
        raise ValueError(
            f"{path!r} was trained for problem hash {config.get('problem_hash')} "
            f"({config.get('problem', {}).get('name')!r}), not {problem.hash} ({problem.name!r})"
        )
    skeleton = posterior_skeleton(config)
    _, model = read_blob(path, skeleton, kind=KIND, version=FORMAT_VERSION)
    stored = header.get("standardization", {})
    for k, v in model.standardizer.to_dict().items():
        if k not in stored or not np.array_equal(np.asarray(stored[k]), np.asarray(v)):
            raise ValueError(f"{path!r}: standardisation `{k}` in the header disagrees with the weights (corrupt file)")
    return model
