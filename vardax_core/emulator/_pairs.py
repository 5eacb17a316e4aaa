"""Training pairs simulated with the emulator: step 3 feeding step 5.

Once an emulator has passed its gates it can stand in for the physics when the
amortized heads' training pairs are simulated. Nothing else changes: the prior draw, the
observation operator, the noise and the missing-data mask are the problem's own, and
event i uses the same key as :func:`vardax_core.data.write_pairs`, so with the same seed
the emulated pairs share x₀, ε and the mask with the physics pairs and differ only by
the window operator, y_emu − y_phys = G_ψ(x₀) − G(x₀) where G_ψ(x₀) = (H(F_ψ^{s_t}(x₀)))_t.

The heads trained on them are gated against the *physics* oracle, as any head is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..data import write_pairs
from ..problems import Problem
from ._inference import emulated_problem


def _config(emulator) -> dict:
    return getattr(emulator, "config", None) or {"type": type(emulator).__name__}


def emulator_fingerprint(emulator) -> str:
    """SHA-256 (hex, 16 chars) of an emulator's config and weights: two emulators with
    the same fingerprint compute the same function."""
    h = hashlib.sha256(json.dumps(_config(emulator), sort_keys=True, default=str).encode())
    for leaf in jax.tree_util.tree_leaves(eqx.filter(emulator, eqx.is_array)):
        arr = np.asarray(leaf)
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def write_emulated_pairs(
    problem: Problem,
    emulator,
    path: str,
    n_events: int,
    seed: int,
    chunk_size: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> str:
    """``write_pairs`` for ``problem`` with the forward model replaced by ``emulator``
    (:func:`emulated_problem`): a ``pairs`` store of ``problem`` (same layout and problem
    hash, so every head and reader accepts it) whose ``forward`` attribute is
    ``"emulator"``; the emulator's fingerprint is the store's ``identity`` (resuming the
    store with another emulator is refused) and its config is recorded. ``attrs`` adds
    provenance (e.g. the registered model version). Resumable like ``write_pairs``."""
    fingerprint = emulator_fingerprint(emulator)
    provenance = {
        **(attrs or {}),
        "forward": "emulator",
        "identity": f"emulator:{fingerprint}",
        "emulator_fingerprint": fingerprint,
        "emulator_config": json.dumps(_config(emulator), sort_keys=True, default=str),
    }
    return write_pairs(problem, path, n_events, seed, chunk_size, progress,
                       simulator=emulated_problem(problem, emulator), attrs=provenance)
