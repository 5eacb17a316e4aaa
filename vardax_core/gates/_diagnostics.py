"""Calibration diagnostics (reported next to the gates, never gating).

All are computed from one :class:`~vardax_core.gates.SBCSimulation`:

- **expected coverage** of central marginal credible intervals: for level a, the
  fraction of (run, component) pairs whose truth lies in the central a-interval of the
  draws, |u − ½| ≤ a/2, with u the randomised normalised rank (exactly uniform under
  calibration, so the expected coverage is a). With a density, the **HPD coverage**:
  the truth lies in the a-highest-density region when the fraction of draws with a
  higher density is ≤ a, i.e. u_logq ≥ 1 − a.
- **TARP** (Lemos et al. 2023): ECP(a) = P(f < a), with f the fraction of draws closer
  (in prior-standardised distance) than the truth to a random reference point drawn from
  the prior. Calibrated posteriors give ECP(a) = a; unlike marginal ranks it sees the
  joint distribution.
- **posterior z-score** (mean_q − x_true) / std_q per component (≈ N(0, 1) for a
  calibrated head: RMS ≈ 1; > 1 over-confident, < 1 under-confident) and **posterior
  contraction** 1 − var_q / var_prior (how much the observations teach; Schad et al.).
"""

from __future__ import annotations

import numpy as np


def coverage_levels(n: int) -> np.ndarray:
    """``n`` nominal levels evenly inside (0, 1): 1/(n+1), …, n/(n+1)."""
    return np.arange(1, n + 1) / (n + 1)


def sbc_diagnostics(sim, prior_variance, n_levels: int = 19, density: bool = False) -> dict:
    """Coverage, HPD coverage (with ``density``), TARP, z-scores and contraction from
    an SBC simulation; ``prior_variance`` is the prior's marginal variance (n,)."""
    u = np.asarray(sim.u, dtype=np.float64)
    truth = np.asarray(sim.truth, dtype=np.float64)
    n = truth.shape[1]
    finite = np.asarray(sim.finite, bool)
    levels = coverage_levels(n_levels)
    out: dict = {"levels": levels, "n_runs_used": int(finite.sum())}
    if not finite.any():
        return {**out, "summary": {"note": "no finite runs: diagnostics unavailable"}}
    u, truth = u[finite], truth[finite]
    comp = u[:, :n]
    cov = np.array([np.mean(np.abs(comp - 0.5) <= a / 2) for a in levels])
    out["coverage"] = cov
    summary = {"coverage_max_abs_error": float(np.max(np.abs(cov - levels)))}
    if density:
        hpd = np.array([np.mean(u[:, -1] >= 1 - a) for a in levels])
        out["hpd_coverage"] = hpd
        summary["hpd_coverage_max_abs_error"] = float(np.max(np.abs(hpd - levels)))
    tarp = np.asarray(sim.tarp, dtype=np.float64)[finite]
    ecp = np.array([np.mean(tarp < a) for a in levels])
    out["tarp_ecp"] = ecp
    summary["tarp_max_abs_error"] = float(np.max(np.abs(ecp - levels)))
    mean, std = np.asarray(sim.post_mean)[finite], np.asarray(sim.post_std)[finite]
    z = (mean - truth) / np.where(std > 0, std, np.nan)
    contraction = 1.0 - std**2 / np.asarray(prior_variance, dtype=np.float64).reshape(1, n)
    out["z_mean"] = np.nanmean(z, axis=0)
    out["z_rms"] = np.sqrt(np.nanmean(z**2, axis=0))
    out["contraction"] = np.mean(contraction, axis=0)
    summary.update({
        "z_rms": float(np.sqrt(np.nanmean(z**2))),
        "z_mean": float(np.nanmean(z)),
        "contraction_mean": float(np.mean(contraction)),
    })
    out["summary"] = summary
    return out
