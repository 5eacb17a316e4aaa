"""``run_gates``: the three gates, diagnostics and figures of one posterior."""

from __future__ import annotations

import time

import jax
import numpy as np

from .._version import __version__
from ._adjoint import OracleReference, adjoint_calibration
from ._agreement import posterior_agreement
from ._common import has_density
from ._config import GateConfig
from ._diagnostics import sbc_diagnostics
from ._figures import gate_figures
from ._report import GateReport
from ._sbc import sbc_gate, simulate_sbc, statistic_names

ORACLE_VARIABLES = ("y", "mask", "mean", "std", "converged")


def _variable(ds, name: str, shape: tuple) -> np.ndarray:
    if name not in ds:
        raise ValueError(f"oracle dataset has no variable `{name}` (has: {', '.join(sorted(ds.data_vars))})")
    da = ds[name]
    if "event" in da.dims:
        da = da.transpose("event", ...)
    a = np.asarray(da.values)
    if a.shape[1:] != tuple(shape) or a.ndim == 0:
        raise ValueError(f"oracle variable `{name}` must have shape (event, {', '.join(map(str, shape))}), "
                         f"got {a.shape}")
    return a


def read_oracle(oracle_dataset, problem) -> dict:
    """The arrays the gates need from an oracle dataset (validated against ``problem``):
    ``y``, ``mask`` (E, T, *obs); ``mean``, ``std`` (E, *state); ``converged`` (E,)."""
    state, yshape = problem.state_shape, problem.y_shape
    out = {
        "y": _variable(oracle_dataset, "y", yshape).astype(np.float64),
        "mask": _variable(oracle_dataset, "mask", yshape),
        "mean": _variable(oracle_dataset, "mean", state).astype(np.float64),
        "std": _variable(oracle_dataset, "std", state).astype(np.float64),
        "converged": _variable(oracle_dataset, "converged", ()),
    }
    if out["mask"].dtype != np.bool_:
        raise ValueError(f"oracle variable `mask` must be boolean, got {out['mask'].dtype}")
    n = {k: v.shape[0] for k, v in out.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"oracle variables disagree on the number of events: {n}")
    out["converged"] = out["converged"].astype(bool)
    return out


def run_gates(posterior, problem, oracle_dataset, config: GateConfig | None, key, figure_dir: str | None = None,
              *, reference=None) -> tuple[GateReport, list[str]]:
    """Gate ``posterior`` on ``problem`` against the oracle posteriors in ``oracle_dataset``.

    - agreement: the converged oracle events (at most ``config.agreement_events``);
    - adjoint calibration: the first ``config.adjoint_events`` converged events, against
      ``reference`` (default: the oracle's ∂x*/∂y at its x* = ``mean``,
      :class:`OracleReference`; :class:`KalmanReference` for linear problems);
    - SBC: ``config.sbc_runs`` fresh simulations from the problem's prior.

    Returns the :class:`GateReport` (with diagnostics and timings) and the paths of the
    PNG figures written to ``figure_dir`` (none when it is None).
    """
    config = config or GateConfig()
    k_adj, k_sbc = jax.random.split(key)
    data = read_oracle(oracle_dataset, problem)
    conv = np.flatnonzero(data["converged"])
    timings = {}

    sel = conv[: config.agreement_events] if config.agreement_events else conv
    t = time.perf_counter()
    agreement = posterior_agreement(posterior, data["y"][sel], data["mask"][sel], data["mean"][sel],
                                    data["std"][sel], config)
    timings["posterior_agreement"] = time.perf_counter() - t

    sel_adj = conv[: config.adjoint_events]
    t = time.perf_counter()
    adjoint = adjoint_calibration(posterior, data["y"][sel_adj], data["mask"][sel_adj],
                                  reference if reference is not None else OracleReference(problem, config.adjoint_hessian), k_adj, config,
                                  aux=data["mean"][sel_adj], state_shape=problem.state_shape)
    timings["adjoint_calibration"] = time.perf_counter() - t

    t = time.perf_counter()
    sim = simulate_sbc(posterior, problem, k_sbc, config)
    sbc_result = sbc_gate(sim, config, statistic_names(posterior, problem))
    timings["sbc"] = time.perf_counter() - t

    diagnostics = sbc_diagnostics(sim, np.asarray(problem.prior.cov.variance()).reshape(-1),
                                  config.coverage_levels, has_density(posterior))
    meta = {
        "problem": problem.name,
        "problem_hash": problem.hash,
        "posterior": type(posterior).__name__,
        "has_density": has_density(posterior),
        "reference": type(reference).__name__ if reference is not None else f"OracleReference({config.adjoint_hessian})",
        "oracle_events": int(data["converged"].size),
        "oracle_unconverged_excluded": int((~data["converged"]).sum()),
        "code_version": __version__,
        "timings_s": timings,
    }
    paths: list[str] = []
    if figure_dir is not None:
        paths = gate_figures(figure_dir, agreement, adjoint, sbc_result, np.asarray(sim.u), diagnostics, config)
        meta["figures"] = paths
    report = GateReport((agreement, adjoint, sbc_result), config.to_dict(), diagnostics, meta)
    return report, paths
