"""The ``oracle`` dataset: 4DVar + Laplace posteriors of pairs-store events, in Zarr.

Written chunk by chunk along ``event`` with :class:`~vardax_core.data.ChunkedStore`
(resumable: a crash loses at most the chunk in flight, a rerun solves exactly the
chunks not yet written). :class:`OracleStoreWriter` exposes the chunks, so a
Prefect/Dask runner can solve them in parallel processes and write each by region
into the one store; :func:`solve_to_store` runs them all in this process.

Every event of the selection gets a row, never dropped, and the posterior variables
are never NaN. An event whose observations are non-finite at an observed position is
flagged ``INVALID_INPUT``; one whose solve or Laplace posterior is not finite (a
divergent window) is flagged ``NONFINITE``. Both are written with the *prior* as a
finite fallback (``mean`` = x_b, ``std`` and ``cov_chol`` of B), ``fallback`` True,
``converged`` False, ``cost`` and ``grad_norm`` = +inf and ``iterations`` 0. ``y`` and
``mask`` are copied from the pairs store as they are (NaN at unobserved slots, by the
project's convention).

With a ``reference`` (:class:`ReferenceConfig`) each chunk also gets the exact posterior
by MCMC from its Laplace posterior (:func:`mcmc_reference`): ``ref_mean``, ``ref_std``,
``ref_mcse``, ``ref_draws`` (event, draw, *state), the per-event diagnostics
``ref_rhat``, ``ref_ess``, ``ref_acceptance``, ``ref_divergences``, ``ref_mixed`` (use
an event as a reference only where True; False for fallback events),
``ref_laplace_shift`` / ``ref_laplace_ok`` (does the Laplace posterior hold?) and the
posterior-mean Jacobian ``ref_jacobian`` with its Monte-Carlo variance
``ref_jacobian_var`` (event, *state, time, *obs). Chunk c's chains use the key
``fold_in(key(reference_seed), c)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import jax
import numpy as np
import xarray as xr

from .._version import __version__
from ..data import ChunkedStore, DatasetSchema, VariableSpec, dataset_hash, layout_sizes, open_pairs, open_store
from ..data import problem_attrs, time_coord
from ..data._schema import cf
from ..problems import Problem
from ._base import AbstractFourDVar
from ._laplace import _resolve_method, laplace_posterior
from ..posterior import Posterior
from ._multistart import MultiStart
from ._reference import ReferenceConfig, mcmc_reference
from ._result import CONVERGED, INVALID_INPUT, NONFINITE, REASONS
from ._strong import StrongFourDVar

ORACLE = DatasetSchema(
    name="oracle",
    variables=(
        VariableSpec("source_event", ("event",), "int64", -1),
        VariableSpec("x_true", ("event", "*state"), "float64", np.nan),
        VariableSpec("y", ("event", "time", "*obs"), "float64", np.nan),
        VariableSpec("mask", ("event", "time", "*obs"), "bool", False),
        VariableSpec("mean", ("event", "*state"), "float64", np.nan),
        VariableSpec("std", ("event", "*state"), "float64", np.nan),
        VariableSpec("cov_chol", ("event", "cov_row", "cov_col"), "float64", np.nan, required=False),
        VariableSpec("cost", ("event",), "float64", np.nan),
        VariableSpec("grad_norm", ("event",), "float64", np.nan),
        VariableSpec("iterations", ("event",), "int32", -1),
        VariableSpec("converged", ("event",), "bool", False),
        VariableSpec("reason", ("event",), "int32", -1),
        VariableSpec("fallback", ("event",), "bool", False),
        # the MCMC reference posterior (``reference=ReferenceConfig(...)``; see mcmc_reference)
        *(VariableSpec(name, dims, dtype, fill, required=False) for name, dims, dtype, fill in (
            ("ref_mean", ("event", "*state"), "float64", np.nan),
            ("ref_std", ("event", "*state"), "float64", np.nan),
            ("ref_mcse", ("event", "*state"), "float64", np.nan),
            ("ref_draws", ("event", "draw", "*state"), "float64", np.nan),
            ("ref_rhat", ("event",), "float64", np.nan),
            ("ref_ess", ("event",), "float64", np.nan),
            ("ref_acceptance", ("event",), "float64", np.nan),
            ("ref_divergences", ("event",), "int32", -1),
            ("ref_mixed", ("event",), "bool", False),
            ("ref_laplace_shift", ("event",), "float64", np.nan),
            ("ref_laplace_ok", ("event",), "bool", False),
            ("ref_jacobian", ("event", "*state", "time", "*obs"), "float64", np.nan),
            ("ref_jacobian_var", ("event", "*state", "time", "*obs"), "float64", np.nan),
        )),
    ),
    attrs={
        "source_event": cf("source event", "index of the event in the held-out pairs store"),
        "mean": cf("4DVar analysis x*", "minimiser of the strong-constraint 4DVar cost (the MAP)", "1"),
        "std": cf("Laplace standard deviation", "marginal std of the Laplace posterior N(x*, P) at the MAP", "1"),
        "cov_chol": cf("Laplace covariance factor", "lower Cholesky factor L of the Laplace covariance P = L Lᵀ",
                       "1"),
        "cost": cf("4DVar cost at x*", "J(x*) = background + observation misfit (negative log posterior + const)"),
        "grad_norm": cf("gradient norm at x*", "‖∇J(x*)‖ at the end of the solve"),
        "iterations": cf("solver iterations", "iterations the 4DVar solver ran"),
        "converged": cf("converged", "True when the solve met its gradient tolerance"),
        "reason": cf("stop reason", "solver stop code (see vardax_core.oracle)"),
        "fallback": cf("fallback used", "True when the fallback solver produced x*"),
        "ref_mean": cf("reference posterior mean", "mean of the MCMC reference draws", "1"),
        "ref_std": cf("reference posterior std", "marginal std of the MCMC reference draws", "1"),
        "ref_mcse": cf("Monte-Carlo standard error of ref_mean", "from the chains' effective sample size", "1"),
        "ref_draws": cf("reference posterior draws", "thinned MCMC draws of the exact posterior", "1"),
        "ref_rhat": cf("split R-hat", "largest split R-hat over state components (mixing)"),
        "ref_ess": cf("effective sample size", "smallest effective sample size over state components"),
        "ref_acceptance": cf("acceptance rate", "mean HMC acceptance probability"),
        "ref_divergences": cf("divergences", "divergent HMC transitions"),
        "ref_mixed": cf("chains mixed", "R-hat and ESS within bounds and no divergence; other events are never used"),
        "ref_laplace_shift": cf("Laplace mean shift", "max_i |ref_mean − x*|_i / ref_std_i"),
        "ref_laplace_ok": cf("Laplace holds", "ref_laplace_shift and every Laplace/reference std ratio within tolerance"),
        "ref_jacobian": cf("posterior-mean Jacobian", "∂E[x0|y]/∂y = Cov(x0, G(x0) | y) R⁻¹ from the draws", "1"),
        "ref_jacobian_var": cf("Monte-Carlo variance of ref_jacobian", "between-chain variance per entry", "1"),
    },
)

#: The reference-posterior variables written when the writer has a ``reference`` config
#: (``ref_jacobian``/``ref_jacobian_var`` only when that config's ``jacobian`` is True).
REFERENCE_VARIABLES = tuple(v.name for v in ORACLE.variables if v.name.startswith("ref_"))

#: Attributes that, besides the store's identity, must match when a write resumes.
_RESUME_ATTRS = ("pairs_hash", "events_hash", "solver_config", "laplace_config", "reference_config")


def _events_hash(events: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(events, dtype=np.int64).tobytes()).hexdigest()[:16]


class OracleStoreWriter:
    """Solve the events ``events`` (default: all) of the pairs store at ``pairs_path``
    with ``solver`` (default :class:`StrongFourDVar`) and the Laplace posterior
    (``laplace_method``, ``rank``), writing the ``oracle`` store at ``out_path`` in
    chunks of ``chunk_size`` events.

    Constructing the writer creates the store (or reopens it, refusing one written for
    another problem, pairs store, event selection, solver or Laplace configuration).
    Then ``pending_chunks()`` lists what is left, ``solve_chunk(c)`` computes chunk
    ``c`` (numpy arrays, no I/O but reading the pairs) and ``write_chunk(c, data)``
    writes it and marks it done; ``process_chunk(c)`` does both. Chunks are independent,
    so workers in other processes may each build a writer with the same arguments
    (pass ``pairs_hash`` to skip re-hashing the pairs) and process disjoint chunks;
    create the store once, before starting them. Every chunk is solved as a full batch
    of ``chunk_size`` events (the last one padded), so one compiled program serves all.
    """

    def __init__(
        self,
        problem: Problem,
        pairs_path: str,
        out_path: str,
        *,
        events=None,
        solver: AbstractFourDVar | MultiStart | None = None,
        chunk_size: int = 256,
        laplace_method: str = "auto",
        rank: int | None = None,
        pairs_hash: str | None = None,
        reference: ReferenceConfig | None = None,
        reference_seed: int = 0,
    ):
        self.problem = problem
        self.solver = solver if solver is not None else StrongFourDVar()
        self.pairs_path = str(pairs_path)
        self.pairs = open_pairs(self.pairs_path, problem)
        n_pairs = self.pairs.sizes["event"]
        if events is None:
            events = np.arange(n_pairs)
        events = np.asarray(events)
        if events.ndim != 1 or events.size == 0 or not np.issubdtype(events.dtype, np.integer):
            raise ValueError(f"`events` must be a non-empty 1-D array of event indices, got {events.dtype} {events.shape}")
        if events.min() < 0 or events.max() >= n_pairs:
            raise ValueError(f"`events` must index the pairs store's {n_pairs} events, got range [{events.min()}, {events.max()}]")
        self.events = events.astype(np.int64)
        self.laplace_method = _resolve_method(problem, laplace_method)
        self.rank = rank
        self.has_cov_chol = self.laplace_method == "dense"
        if reference is not None and not isinstance(reference, ReferenceConfig):
            raise ValueError(f"`reference` must be a ReferenceConfig or None, got {type(reference).__name__}")
        if reference is not None and not self.has_cov_chol:
            raise ValueError("`reference` (the MCMC reference posterior) needs the dense Laplace posterior as its "
                             f"preconditioner, but laplace_method resolved to {self.laplace_method!r}")
        self.reference, self.reference_seed = reference, int(reference_seed)
        n = problem.n_state
        sizes = {**layout_sizes(problem), "cov_row": (n,), "cov_col": (n,),
                 "draw": (reference.n_draws if reference is not None else 0,)}
        ref_names = () if reference is None else tuple(
            v for v in REFERENCE_VARIABLES if reference.jacobian or not v.startswith("ref_jacobian"))
        names = [v.name for v in ORACLE.variables
                 if v.required or (v.name == "cov_chol" and self.has_cov_chol) or v.name in ref_names]
        attrs = {
            **problem_attrs(problem),
            "seed": self.pairs.attrs.get("seed"),
            "pairs_hash": pairs_hash or dataset_hash(self.pairs_path),
            "events_hash": _events_hash(self.events),
            "solver_config": json.dumps(self.solver.config(), sort_keys=True),
            "laplace_config": json.dumps({"method": self.laplace_method, "rank": rank}, sort_keys=True),
            **({} if reference is None else {
                "reference_config": json.dumps({**reference.to_dict(), "seed": self.reference_seed}, sort_keys=True),
                "has_reference": True}),
            "has_cov_chol": self.has_cov_chol,
            "reason_codes": json.dumps({str(k): v for k, v in REASONS.items()}),
            "fallback": "events flagged invalid_input or nonfinite hold the prior (mean x_b, std and "
            "cov_chol of B), cost = grad_norm = inf, iterations 0",
            "code_version": __version__,
        }
        self.store = ChunkedStore(
            out_path, ORACLE, len(self.events), chunk_size, sizes, attrs,
            coords={"time": time_coord(problem)}, variables=names,
        )
        found = dict(self.store.group.attrs)
        for key in _RESUME_ATTRS:
            if found.get(key) != self.store.attrs.get(key):
                raise ValueError(
                    f"oracle store {out_path!r} exists with {key}={found.get(key)!r}, but this write expects "
                    f"{self.store.attrs.get(key)!r}; use another path or delete the store"
                )
        prior = problem.prior
        self._prior_mean = np.asarray(prior.mean)
        self._prior_std = np.sqrt(np.asarray(prior.cov.variance()))
        self._prior_chol = np.linalg.cholesky(np.asarray(prior.cov.as_matrix())) if self.has_cov_chol else None

    @property
    def path(self) -> str:
        return self.store.path

    @property
    def n_chunks(self) -> int:
        return self.store.n_chunks

    def pending_chunks(self) -> list[int]:
        return self.store.pending_chunks()

    def solve_chunk(self, c: int) -> dict[str, np.ndarray]:
        """Solve chunk ``c``: the arrays ``write_chunk`` expects (no writing)."""
        if not 0 <= c < self.n_chunks:
            raise ValueError(f"chunk index {c} out of range [0, {self.n_chunks})")
        start, stop = self.store.chunk_bounds(c)
        n, size = stop - start, self.store.chunk_size
        src = self.events[start:stop]
        padded = np.concatenate([src, np.full(size - n, src[-1])])
        sel = self.pairs.isel(event=padded)
        x_true = np.asarray(sel["x"].values, dtype=np.float64)
        y = np.asarray(sel["y"].values, dtype=np.float64)
        mask = np.asarray(sel["mask"].values, dtype=bool)

        axes = tuple(range(1, y.ndim))
        valid = np.all(np.isfinite(y) | ~mask, axis=axes)
        bcast = valid.reshape(-1, *[1] * (y.ndim - 1))
        y_s = np.where(bcast & mask, y, 0.0)  # an invalid event is solved with no observations
        mask_s = bcast & mask
        res = self.solver.solve(self.problem, y_s, mask_s)
        post = laplace_posterior(self.problem, res.x, y_s, mask_s, method=self.laplace_method, rank=self.rank)
        res, post = jax.block_until_ready((res, post))

        mean, std = np.asarray(post.mean), np.asarray(post.std)
        out_axes = tuple(range(1, mean.ndim))
        finite = np.all(np.isfinite(mean), axis=out_axes) & np.all(np.isfinite(std) & (std > 0), axis=out_axes)
        chol = None
        if self.has_cov_chol:
            chol = np.asarray(post.cov_factor)
            finite &= np.all(np.isfinite(chol), axis=(1, 2))
        reason = np.asarray(res.reason).copy()
        reason[valid & ~finite] = NONFINITE
        reason[~valid] = INVALID_INPUT
        fallback = (~valid) | (~finite) | (reason == NONFINITE)
        state_b = fallback.reshape(-1, *[1] * (mean.ndim - 1))
        data = {
            "source_event": padded,
            "x_true": x_true,
            "y": y,
            "mask": mask,
            "mean": np.where(state_b, self._prior_mean, mean),
            "std": np.where(state_b, self._prior_std, std),
            "cost": np.where(fallback, np.inf, np.asarray(res.cost)),
            "grad_norm": np.where(fallback, np.inf, np.asarray(res.grad_norm)),
            "iterations": np.where(fallback, 0, np.asarray(res.iterations)),
            "converged": (reason == CONVERGED) & ~fallback,
            "reason": reason,
            "fallback": fallback,
        }
        if self.has_cov_chol:
            data["cov_chol"] = np.where(fallback[:, None, None], self._prior_chol, chol)
        if self.reference is not None:
            data.update(self._reference_chunk(c, y_s, mask_s, data["mean"], data["cov_chol"], fallback))
        return {k: v[:n] for k, v in data.items()}

    def _reference_chunk(self, c: int, y, mask, x_map, chol, fallback) -> dict[str, np.ndarray]:
        """The MCMC reference posterior of chunk ``c`` from its (fallback-filled) Laplace
        posteriors; fallback events are sampled too (finite values) but never ``mixed``."""
        key = jax.random.fold_in(jax.random.key(self.reference_seed), c)
        laplace = Posterior.create(jax.numpy.asarray(x_map), cov_factor=jax.numpy.asarray(chol))
        ref = mcmc_reference(self.problem, y, mask, key, config=self.reference, laplace=laplace)
        ref = jax.block_until_ready(ref)
        out = {
            "ref_mean": ref.mean, "ref_std": ref.std, "ref_mcse": ref.mcse, "ref_draws": ref.draws,
            "ref_rhat": ref.rhat, "ref_ess": ref.ess, "ref_acceptance": ref.acceptance,
            "ref_divergences": ref.divergences, "ref_mixed": np.asarray(ref.mixed) & ~fallback,
            "ref_laplace_shift": ref.laplace_shift, "ref_laplace_ok": np.asarray(ref.laplace_ok) & ~fallback,
        }
        if self.reference.jacobian:
            out["ref_jacobian"], out["ref_jacobian_var"] = ref.jacobian, ref.jacobian_var
        return {k: np.asarray(v) for k, v in out.items()}

    def write_chunk(self, c: int, data) -> None:
        self.store.write_chunk(c, data)

    def process_chunk(self, c: int) -> None:
        self.write_chunk(c, self.solve_chunk(c))

    def run(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Solve and write every pending chunk; returns how many were written."""
        pending = self.pending_chunks()
        for i, c in enumerate(pending):
            self.process_chunk(c)
            if progress is not None:
                progress(i + 1, len(pending))
        return len(pending)


def solve_to_store(
    problem: Problem,
    pairs_path: str,
    out_path: str,
    *,
    events=None,
    solver: AbstractFourDVar | MultiStart | None = None,
    chunk_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    laplace_method: str = "auto",
    rank: int | None = None,
    pairs_hash: str | None = None,
    reference: ReferenceConfig | None = None,
    reference_seed: int = 0,
) -> str:
    """Solve ``events`` (default: all) of the pairs store and write the ``oracle`` store
    at ``out_path`` (resumable; see :class:`OracleStoreWriter`); with ``reference``, also
    the MCMC reference posterior of every event. Returns ``out_path``."""
    writer = OracleStoreWriter(
        problem, pairs_path, out_path, events=events, solver=solver, chunk_size=chunk_size,
        laplace_method=laplace_method, rank=rank, pairs_hash=pairs_hash, reference=reference,
        reference_seed=reference_seed,
    )
    writer.run(progress)
    return writer.path


def open_oracle(path: str, problem: Problem | None = None) -> xr.Dataset:
    """Open and validate an ``oracle`` store (lazily): schema, completeness, and with
    ``problem`` its hash and the shape of every variable."""
    ds = open_store(path, ORACLE, {"problem_hash": problem.hash} if problem is not None else None)
    has_chol = bool(ds.attrs.get("has_cov_chol"))
    if has_chol != ("cov_chol" in ds.variables):
        raise ValueError(
            f"oracle store {path!r}: attribute has_cov_chol={has_chol} but variable `cov_chol` is "
            f"{'missing' if has_chol else 'present'}"
        )
    if problem is not None:
        n, s, t = ds.sizes["event"], problem.state_shape, problem.y_shape
        shapes = {"source_event": (n,), "x_true": (n, *s), "y": (n, *t), "mask": (n, *t), "mean": (n, *s),
                  "std": (n, *s), "cost": (n,), "grad_norm": (n,), "iterations": (n,), "converged": (n,),
                  "reason": (n,), "fallback": (n,)}
        if has_chol:
            shapes["cov_chol"] = (n, problem.n_state, problem.n_state)
        if bool(ds.attrs.get("has_reference")):
            for name in REFERENCE_VARIABLES:
                if name not in ds.variables and not name.startswith("ref_jacobian"):
                    raise ValueError(f"oracle store {path!r} has a reference posterior but no variable `{name}`")
            shapes.update({k: (n, *s) for k in ("ref_mean", "ref_std", "ref_mcse")})
            shapes.update({k: (n,) for k in ("ref_rhat", "ref_ess", "ref_acceptance", "ref_divergences",
                                             "ref_mixed", "ref_laplace_shift", "ref_laplace_ok")})
            if "ref_jacobian" in ds.variables:
                shapes.update({k: (n, *s, *t) for k in ("ref_jacobian", "ref_jacobian_var")})
        for name, shape in shapes.items():
            if tuple(ds[name].shape) != shape:
                raise ValueError(f"variable `{name}` in {path!r} has shape {tuple(ds[name].shape)}, expected {shape}")
    return ds
