"""Saving and loading trained emulators (weights + JSON config + format version)."""

from __future__ import annotations

import math

from ..amortized._serial import read_blob, read_header, write_blob
from ..problems import Problem
from ._model import FORMAT_VERSION, ConvResidualEmulator, emulator_from_config

KIND = "vardax-emulator"


def save_emulator(path: str, emulator: ConvResidualEmulator) -> str:
    """Write ``emulator`` to one file: a JSON header (format version, the full config —
    architecture, dtype, the physics problem's config and hash, training provenance — and
    the standardisation statistics) followed by the weights
    (``eqx.tree_serialise_leaves``). The write is atomic. Returns ``path``."""
    if not isinstance(emulator, ConvResidualEmulator):
        raise TypeError(f"save_emulator: expected a ConvResidualEmulator, got {type(emulator).__name__}")
    write_blob(path, emulator, {"config": emulator.config, "statistics": emulator.statistics()},
               kind=KIND, version=FORMAT_VERSION)
    return str(path)


def read_emulator_config(path: str) -> dict:
    """The stored config of a saved emulator, without loading the weights."""
    return read_header(path, kind=KIND, version=FORMAT_VERSION)[0]["config"]


def load_emulator(path: str, problem: Problem | None = None) -> ConvResidualEmulator:
    """Load an emulator saved by :func:`save_emulator`; its outputs are bitwise those of
    the saved one. The skeleton is rebuilt from the stored config
    (:func:`emulator_from_config`). Another kind of file, another format version, a
    config this code cannot build, weights that do not fit it, statistics that disagree
    with the header, or (with ``problem``) another problem hash raise ``ValueError``
    with the reason (a missing file ``FileNotFoundError``)."""
    header, _ = read_header(path, kind=KIND, version=FORMAT_VERSION)
    config = header.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path!r}: the header has no emulator config")
    if problem is not None and config.get("problem_hash") != problem.hash:
        raise ValueError(
            f"{path!r} emulates problem hash {config.get('problem_hash')} "
            f"({config.get('problem', {}).get('name')!r}), not {problem.hash} ({problem.name!r})"
        )
    try:
        skeleton = emulator_from_config(config, shapes_only=True)
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from None
    _, model = read_blob(path, skeleton, kind=KIND, version=FORMAT_VERSION)
    stored = header.get("statistics", {})
    for k, v in model.statistics().items():
        if k not in stored or not (stored[k] == v or (math.isnan(stored[k]) and math.isnan(v))):
            raise ValueError(f"{path!r}: statistic `{k}` in the header disagrees with the weights (corrupt file)")
    return model
