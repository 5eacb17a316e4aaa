"""The ``analyses`` dataset: posterior products of a model over a catalogue.

``AnalysesWriter`` runs a posterior (any object with ``posterior(y, mask, key,
n_samples)`` → :class:`~vardax_core.Posterior`) over a catalogue chunk by chunk and
writes mean, std, quantiles and optional draws. Memory is bounded by a few chunks; the
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
import zarr

from .._version import __version__
from ..problems import Problem
from ._catalogue import open_catalogue
from ._hash import dataset_hash
from ._pairs import problem_attrs
from ._schema import ANALYSES
from ._store import ChunkedStore, gather_io, open_store


@eqx.filter_jit
def _analyse(posterior, y, mask, key, levels, n_samples: int, moment_draws: int = 100):
    """Mean, std, quantiles (and draws) for a batch.

    - A posterior with a closed-form std (Gaussian heads, the exact posterior): std as
      given; quantiles empirical from the ``n_samples`` draws when there are any, else
      Gaussian (mean + std·Φ⁻¹(q)).
    - Without one (flow and score heads): std and quantiles from ``n_samples`` draws when
      n_samples >= 2, else from ``moment_draws`` draws of its own distribution (key
      ``fold_in(key, 1)``) that are not stored — one head, one posterior: never a
      Gaussian guess around a non-Gaussian head.
    """
    post = posterior.posterior(y, mask, key, n_samples=n_samples)
    mean = post.mean
    draws = post.samples if n_samples else None
    if post.std is None and n_samples < 2:
        moments = posterior.posterior(y, mask, jax.random.fold_in(key, 1), n_samples=moment_draws).samples
        std = jnp.std(moments, axis=1, ddof=1)
        q = jnp.moveaxis(jnp.quantile(moments, levels, axis=1), 0, 1)
        return mean, std, q, draws
    if n_samples:
        std = post.std if post.std is not None else jnp.std(draws, axis=1, ddof=1)
        q = jnp.moveaxis(jnp.quantile(draws, levels, axis=1), 0, 1)
        return mean, std, q, draws
    std = post.std
    q = mean[:, None] + std[:, None] * jss.norm.ppf(levels).reshape((1, -1) + (1,) * (mean.ndim - 1))
    return mean, std, q, None


def _has_closed_form_std(posterior, y, mask) -> bool:
    """Whether ``posterior.posterior(y, mask)`` carries a std without draws (traced
    abstractly: nothing is computed)."""
    out = jax.eval_shape(lambda a, b: posterior.posterior(a, b, jax.random.key(0), n_samples=0), y, mask)
    return out.std is not None


class AnalysesWriter:
    """Create or resume the analyses store of ``posterior`` over ``catalogue_path``.

    ``provenance`` (model name, version, run id, …) goes into the store's attributes;
    ``model_version`` is part of the store identity, so a new champion needs a new path.
    ``catalogue_hash``: the catalogue's :func:`~vardax_core.data.dataset_hash` when the
    caller has just computed it (the reprocessing flow does, to name the output and
    decide whether to skip); computed here otherwise. Hashing reads the whole catalogue,
    so passing it saves one full read per writer (and per Dask worker).
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
        catalogue_hash: str | None = None,
        moment_draws: int = 100,
    ):
        levels = np.asarray(quantiles, dtype=np.float64)
        if levels.ndim != 1 or levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
            raise ValueError(f"`quantiles` must be levels in (0, 1), got {list(quantiles)}")
        if int(n_samples) < 0:
            raise ValueError(f"`n_samples` must be >= 0, got {n_samples}")
        if int(moment_draws) < 2:
            raise ValueError(f"`moment_draws` must be >= 2, got {moment_draws}")
        if "model_version" not in provenance:
            raise ValueError("`provenance` must name the `model_version` (part of the store identity)")
        self.catalogue = open_catalogue(catalogue_path, problem)  # validates before anything is written
        self.posterior, self.problem = posterior, problem
        self.levels, self.n_samples, self.seed = levels, int(n_samples), int(seed)
        self._levels, self._key = jnp.asarray(levels), jax.random.key(self.seed)
        cat = zarr.open_group(store=str(catalogue_path), mode="r")
        self._cat_y, self._cat_mask = cat["y"], cat["mask"]  # read directly: no xarray indexing per chunk
        n = self.catalogue.sizes["event"]
        cat_chunk = int(self.catalogue.attrs["chunk_size"])
        # moments from unstored draws only for a posterior without a closed-form std and < 2 stored draws
        needs_draws = self.n_samples < 2 and not _has_closed_form_std(
            posterior, jnp.asarray(self._cat_y[:1]), jnp.asarray(self._cat_mask[:1]))
        self.moment_draws = int(moment_draws) if needs_draws else 0
        self.catalogue_hash = str(catalogue_hash) if catalogue_hash else dataset_hash(catalogue_path)
        variables = ["mean", "std", "quantiles"] + (["samples"] if self.n_samples else [])
        self.store = ChunkedStore(
            out_path, ANALYSES, n, int(chunk_size or cat_chunk),
            {"state": problem.state_shape, "quantile": (levels.size,), "sample": (max(self.n_samples, 1),)},
            attrs={
                **problem_attrs(problem), **{k: v for k, v in provenance.items()},
                "catalogue_path": str(catalogue_path), "catalogue_hash": self.catalogue_hash,
                "quantile_levels": levels.tolist(), "n_samples": self.n_samples,
                "quantile_method": ("samples" if self.n_samples >= 2 or (self.n_samples and not self.moment_draws)
                                    else f"samples ({self.moment_draws} draws, not stored)" if self.moment_draws
                                    else "gaussian"),
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

    def _read(self, c: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """Event chunk ``c`` of the catalogue as numpy ``y, mask`` (both arrays in one
        round trip to Zarr's I/O loop), padded to a full-size batch — one compiled shape —
        with unobserved events (mask False) that are dropped after."""
        start, stop = self.store.chunk_bounds(c)
        size = self.store.chunk_size
        sel = slice(start, stop)
        y, mask = gather_io(self._cat_y.async_array.getitem(sel), self._cat_mask.async_array.getitem(sel))
        k = stop - start
        if k < size:
            pad = [(0, size - k)] + [(0, 0)] * (y.ndim - 1)
            y, mask = np.pad(y, pad), np.pad(mask, pad)
        return c, k, y, mask

    def _dispatch(self, read) -> tuple:
        """The jitted analysis of a read chunk (device arrays; the heads' finiteness check
        is a host callback, so on CPU JAX runs it before returning)."""
        c, k, y, mask = read
        key = jax.random.fold_in(self._key, c)
        return c, k, _analyse(self.posterior, jnp.asarray(y), jnp.asarray(mask), key, self._levels, self.n_samples,
                             max(self.moment_draws, 2))

    def _launch(self, c: int):
        """Read event chunk ``c`` and start its analysis."""
        return self._dispatch(self._read(c))

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
        """Process every pending chunk here; returns how many were processed. Three
        chunks are in flight: c+1 is read (and decoded) by a reader thread and c-1 written
        (encoded, stored, marked done) by a writer thread while the jitted analysis of c
        runs. At most three chunks are in memory, chunks are marked done in order, and a
        crash still loses only chunks not yet marked done."""
        pending = self.pending_chunks()
        if not pending:
            return 0
        with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyses-reader") as reader,
              ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyses-writer") as writer):
            reading = reader.submit(self._read, pending[0])
            writing = None
            for i, c in enumerate(pending):
                read = reading.result()
                if i + 1 < len(pending):
                    reading = reader.submit(self._read, pending[i + 1])
                launched = self._dispatch(read)
                del read
                if writing is not None:
                    writing.result()  # re-raises a failed write
                    if progress is not None:
                        progress(i, len(pending))
                writing = writer.submit(self._write, launched)
            writing.result()
            if progress is not None:
                progress(len(pending), len(pending))
        return len(pending)


def open_analyses(path: str) -> xr.Dataset:
    """Open and validate a complete analyses store."""
    return open_store(path, ANALYSES)
