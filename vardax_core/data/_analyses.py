"""The ``analyses`` dataset: posterior products of a model over a catalogue.

``AnalysesWriter`` runs a posterior (any object with ``posterior(y, mask, key,
n_samples)`` → :class:`~vardax_core.Posterior`) over a catalogue chunk by chunk and
writes mean, std, quantiles and optional draws. Memory is bounded by one chunk; the
store is resumable and idempotent (its identity is the catalogue hash plus the model
version), and each chunk can be processed independently — by another process, a Dask
worker — and written by region.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jss
import numpy as np
import xarray as xr

from .._version import __version__
from ..problems import Problem
from ._catalogue import open_catalogue
from ._hash import dataset_hash
from ._pairs import problem_attrs
from ._schema import ANALYSES
from ._store import ChunkedStore, open_store


@eqx.filter_jit
def _analyse(posterior, y, mask, key, levels, n_samples: int):
    """Mean, std, quantiles (and draws) for a batch. Quantiles are empirical from the
    draws when ``n_samples`` > 0, else Gaussian (mean + std·Φ⁻¹(q))."""
    post = posterior.posterior(y, mask, key, n_samples=n_samples)
    mean = post.mean
    if n_samples:
        draws = post.samples
        std = post.std if post.std is not None else jnp.std(draws, axis=1)
        q = jnp.moveaxis(jnp.quantile(draws, levels, axis=1), 0, 1)
        return mean, std, q, draws
    std = post.std
    q = mean[:, None] + std[:, None] * jss.norm.ppf(levels).reshape((1, -1) + (1,) * (mean.ndim - 1))
    return mean, std, q, None


class AnalysesWriter:
    """Create or resume the analyses store of ``posterior`` over ``catalogue_path``.

    ``provenance`` (model name, version, run id, …) goes into the store's attributes;
    ``model_version`` is part of the store identity, so a new champion needs a new path.
    """

    def __init__(
        self,
        posterior,
        problem: Problem,
        catalogue_path: str,
        out_path: str,
        *,
        provenance: dict,
        quantiles: Sequence[float] = (0.05, 0.5, 0.95),
        n_samples: int = 0,
        chunk_size: int | None = None,
        seed: int = 0,
    ):
        levels = np.asarray(quantiles, dtype=np.float64)
        if levels.ndim != 1 or levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
            raise ValueError(f"`quantiles` must be levels in (0, 1), got {list(quantiles)}")
        if int(n_samples) < 0:
            raise ValueError(f"`n_samples` must be >= 0, got {n_samples}")
        if "model_version" not in provenance:
            raise ValueError("`provenance` must name the `model_version` (part of the store identity)")
        self.catalogue = open_catalogue(catalogue_path, problem)  # validates before anything is written
        self.posterior, self.problem = posterior, problem
        self.levels, self.n_samples, self.seed = levels, int(n_samples), int(seed)
        n = self.catalogue.sizes["event"]
        cat_chunk = int(self.catalogue.attrs["chunk_size"])
        self.catalogue_hash = dataset_hash(catalogue_path)
        variables = ["mean", "std", "quantiles"] + (["samples"] if self.n_samples else [])
        self.store = ChunkedStore(
            out_path, ANALYSES, n, int(chunk_size or cat_chunk),
            {"state": problem.state_shape, "quantile": (levels.size,), "sample": (max(self.n_samples, 1),)},
            attrs={
                **problem_attrs(problem), **{k: v for k, v in provenance.items()},
                "catalogue_path": str(catalogue_path), "catalogue_hash": self.catalogue_hash,
                "quantile_levels": levels.tolist(), "n_samples": self.n_samples,
                "quantile_method": "samples" if self.n_samples else "gaussian",
                "seed": self.seed, "code_version": __version__,
                "identity": f"{self.catalogue_hash}|{provenance['model_version']}|{levels.tolist()}|{self.n_samples}",
            },
            coords={"quantile": ("quantile", levels)},
            variables=variables,
        )

    @property
    def path(self) -> str:
        return self.store.path

    def pending_chunks(self) -> list[int]:
        return self.store.pending_chunks()

    def _launch(self, c: int):
        """Read event chunk ``c`` and analyse it (always a full-size batch, so one
        compiled shape)."""
        start, stop = self.store.chunk_bounds(c)
        size = self.store.chunk_size
        y = np.asarray(self.catalogue["y"][start:stop].values)
        mask = np.asarray(self.catalogue["mask"][start:stop].values)
        k = stop - start
        if k < size:  # pad with unobserved events (mask False) and drop them after
            pad = [(0, size - k)] + [(0, 0)] * (y.ndim - 1)
            y, mask = np.pad(y, pad), np.pad(mask, pad)
        key = jax.random.fold_in(jax.random.key(self.seed), c)
        return c, k, _analyse(self.posterior, jnp.asarray(y), jnp.asarray(mask), key,
                              jnp.asarray(self.levels), self.n_samples)

    def _write(self, launched) -> None:
        c, k, (mean, std, q, draws) = launched
        out = {"mean": np.asarray(mean)[:k], "std": np.asarray(std)[:k], "quantiles": np.asarray(q)[:k]}
        if self.n_samples:
            out["samples"] = np.asarray(draws)[:k]
        self.store.write_chunk(c, out)

    def process_chunk(self, c: int) -> None:
        """Analyse event chunk ``c`` and write it (one unit of work for a task runner)."""
        self._write(self._launch(c))

    def run(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Process every pending chunk here; returns how many were processed. Chunk c is
        written by one background thread while chunk c+1 is read and analysed here
        (compression and storage overlap the jitted analysis); at most two chunks are in
        memory, chunks are marked done in order, and a crash still loses only chunks not
        yet marked done."""
        pending = self.pending_chunks()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyses-writer") as pool:
            writing = None
            for i, c in enumerate(pending):
                launched = self._launch(c)
                if writing is not None:
                    writing.result()  # re-raises a failed write
                    if progress is not None:
                        progress(i, len(pending))
                writing = pool.submit(self._write, launched)
            if writing is not None:
                writing.result()
                if progress is not None:
                    progress(len(pending), len(pending))
        return len(pending)


def open_analyses(path: str) -> xr.Dataset:
    """Open and validate a complete analyses store."""
    return open_store(path, ANALYSES)
