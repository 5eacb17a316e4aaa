"""``run_gates``: the three gates, diagnostics and figures of one posterior."""

from __future__ import annotations

import time

import jax
import numpy as np

from .._version import __version__
from ._adjoint import MCMCReference, OracleReference, adjoint_calibration, reference_name
from ._agreement import posterior_agreement
from ._common import has_density
from ._config import GateConfig
from ._diagnostics import sbc_diagnostics
from ._figures import gate_figures
from ._report import GateReport
from ._sbc import sbc_gate, simulate_sbc, statistic_names
from ._scores import skill_scores

ORACLE_VARIABLES = ("y", "mask", "mean", "std", "converged")
#: The MCMC reference posterior, when the oracle step stored one (``oracle.reference``).
REFERENCE_VARIABLES = ("ref_mean", "ref_std", "ref_mixed", "ref_jacobian", "ref_jacobian_var")


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
    if "x_true" in oracle_dataset:
        out["x_true"] = _variable(oracle_dataset, "x_true", state).astype(np.float64)
    if REFERENCE_VARIABLES[0] in oracle_dataset:
        jac = (*state, *yshape)
        out["ref_mean"] = _variable(oracle_dataset, "ref_mean", state).astype(np.float64)
        out["ref_std"] = _variable(oracle_dataset, "ref_std", state).astype(np.float64)
        out["ref_mixed"] = _variable(oracle_dataset, "ref_mixed", ()).astype(bool)
        if "ref_jacobian" in oracle_dataset:
            out["ref_jacobian"] = _variable(oracle_dataset, "ref_jacobian", jac).astype(np.float64)
            out["ref_jacobian_var"] = _variable(oracle_dataset, "ref_jacobian_var", jac).astype(np.float64)
        if "ref_draws" in oracle_dataset:
            draws = oracle_dataset["ref_draws"].transpose("event", "draw", ...).values
            if draws.shape[2:] != tuple(state):
                raise ValueError(f"oracle variable `ref_draws` must have shape (event, draw, "
                                 f"{', '.join(map(str, state))}), got {draws.shape}")
            out["ref_draws"] = draws.astype(np.float64)
        n = {k: v.shape[0] for k, v in out.items()}
        if len(set(n.values())) != 1:
            raise ValueError(f"oracle variables disagree on the number of events: {n}")
    return out


def _adjoint_reference(problem, data: dict, config: GateConfig):
    """The adjoint gate's reference by ``config.adjoint_reference`` and its aux arrays
    (functions of the selected event indices)."""
    has_mcmc = "ref_jacobian" in data
    if config.adjoint_reference == "mcmc" and not has_mcmc:
        raise ValueError("adjoint_reference='mcmc' but the oracle dataset stores no MCMC reference Jacobian "
                         "(`ref_jacobian`): enable `oracle.reference` in the pipeline config, or use 'auto'/'ift'")
    if has_mcmc and config.adjoint_reference in ("auto", "mcmc") and config.adjoint_statistic == "frobenius":
        return MCMCReference(problem.state_shape), lambda sel: (data["ref_jacobian"][sel], data["ref_jacobian_var"][sel])
    return OracleReference(problem, config.adjoint_hessian), lambda sel: data["mean"][sel]


def run_gates(posterior, problem, oracle_dataset, config: GateConfig | None, key, figure_dir: str | None = None,
              *, reference=None) -> tuple[GateReport, list[str]]:
    """Gate ``posterior`` on ``problem`` against the oracle dataset.

    Events used: converged 4DVar events, and where the dataset stores an MCMC reference
    posterior (``ref_*`` variables) only the events whose chains mixed; how many were
    left out of each gate is in the report's ``meta``.

    - agreement: the head's point estimate against the reference posterior mean and std
      (``ref_mean``, ``ref_std``) when stored, else the oracle's ``mean`` / ``std`` (the
      Laplace posterior at the 4DVar MAP, exact on a linear-Gaussian problem); at most
      ``config.agreement_events`` events;
    - adjoint calibration: the first ``config.adjoint_events`` events, against
      ``reference`` (default by ``config.adjoint_reference``: the stored MCMC Jacobian
      :class:`MCMCReference`, else the oracle's implicit-function Jacobian at x* =
      ``mean`` with the ``adjoint_hessian`` Hessian, :class:`OracleReference`);
    - SBC: ``config.sbc_runs`` fresh simulations from the problem's prior.

    Returns the :class:`GateReport` (with diagnostics and timings) and the paths of the
    PNG figures written to ``figure_dir`` (none when it is None).
    """
    config = config or GateConfig()
    k_adj, k_sbc = jax.random.split(key)
    data = read_oracle(oracle_dataset, problem)
    usable = data["converged"] & data.get("ref_mixed", True)
    conv = np.flatnonzero(usable)
    timings = {}

    has_ref = "ref_mean" in data
    mean, std = (data["ref_mean"], data["ref_std"]) if has_ref else (data["mean"], data["std"])
    sel = conv[: config.agreement_events] if config.agreement_events else conv
    t = time.perf_counter()
    agreement = posterior_agreement(posterior, data["y"][sel], data["mask"][sel], mean[sel], std[sel], config)
    agreement.details["reference"] = "mcmc" if has_ref else "oracle-laplace"
    timings["posterior_agreement"] = time.perf_counter() - t

    sel_adj = conv[: config.adjoint_events]
    if reference is None:
        reference, aux_of = _adjoint_reference(problem, data, config)
    else:
        aux_of = lambda s: data["mean"][s]  # noqa: E731
    t = time.perf_counter()
    adjoint = adjoint_calibration(posterior, data["y"][sel_adj], data["mask"][sel_adj], reference, k_adj, config,
                                  aux=aux_of(sel_adj), state_shape=problem.state_shape)
    timings["adjoint_calibration"] = time.perf_counter() - t

    t = time.perf_counter()
    sim = simulate_sbc(posterior, problem, k_sbc, config)
    sbc_result = sbc_gate(sim, config, statistic_names(posterior, problem))
    timings["sbc"] = time.perf_counter() - t

    if config.score_draws and "x_true" in data:
        t = time.perf_counter()
        scores = skill_scores(posterior, data, sel, jax.random.fold_in(key, 7), n_draws=config.score_draws,
                              chunk=config.chunk("eval_chunk"), fast_compile=config.fast_compile)
        timings["scores"] = time.perf_counter() - t
    else:
        scores = None
    diagnostics = sbc_diagnostics(sim, np.asarray(problem.prior.cov.variance()).reshape(-1),
                                  config.coverage_levels, has_density(posterior))
    meta = {
        "problem": problem.name,
        "problem_hash": problem.hash,
        "posterior": type(posterior).__name__,
        "has_density": has_density(posterior),
        "reference": reference_name(reference),
        "agreement_reference": agreement.details["reference"],
        "adjoint_statistic": config.adjoint_statistic,
        "oracle_events": int(data["converged"].size),
        "oracle_unconverged_excluded": int((~data["converged"]).sum()),
        "reference_unmixed_excluded": int((data["converged"] & ~data["ref_mixed"]).sum()) if has_ref else 0,
        "code_version": __version__,
        "timings_s": timings,
    }
    if scores is not None:
        meta["scores"] = scores
    paths: list[str] = []
    if figure_dir is not None:
        paths = gate_figures(figure_dir, agreement, adjoint, sbc_result, np.asarray(sim.u), diagnostics, config)
        meta["figures"] = paths
    report = GateReport((agreement, adjoint, sbc_result), config.to_dict(), diagnostics, meta)
    return report, paths
