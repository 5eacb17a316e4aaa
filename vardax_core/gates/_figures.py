"""Figures of the gates (matplotlib's Agg canvas, PNG).

- rank histograms with the 99 % binomial band (per bin, Binomial(N, 1/B));
- ECDF-difference plots, ECDF(u) − u, with a *simultaneous* band (Säilynoja, Bürkner
  and Vehtari 2022, simulation method): the whole curve of a calibrated posterior stays
  inside it with probability ``band_level``;
- the expected-coverage curve (marginal, HPD, TARP);
- the agreement z-score histogram (per-event max-z and RMS-z);
- the adjoint error histogram (per-event ratios; per-probe errors for the operator-norm statistic).
"""

from __future__ import annotations

import os

import numpy as np
from scipy import stats as sps


def _figure(rows: int = 1, cols: int = 1, figsize=(5, 3.2)):
    """A figure on the Agg canvas, without pyplot (no global backend state is touched,
    so a notebook's inline backend keeps working)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False)


def binomial_band(n_runs: int, n_bins: int, level: float = 0.99) -> tuple[float, float]:
    """The central ``level`` interval of one bin's count, Binomial(N, 1/B)."""
    a = (1 - level) / 2
    return float(sps.binom.ppf(a, n_runs, 1 / n_bins)), float(sps.binom.ppf(1 - a, n_runs, 1 / n_bins))


def simultaneous_ecdf_band(n: int, level: float = 0.99, n_sim: int = 2000, n_grid: int = 100, seed: int = 0):
    """Simultaneous ``level`` band for the ECDF of ``n`` uniform draws on the grid
    z_i = i/(n_grid+1): returns (z, lower, upper) as ECDF values. The pointwise
    binomial level γ is calibrated by simulation so that a uniform sample's whole ECDF
    lies inside with probability ``level``."""
    rng = np.random.default_rng(seed)
    z = np.arange(1, n_grid + 1) / (n_grid + 1)
    counts = np.stack([np.searchsorted(np.sort(rng.random(n)), z, side="right") for _ in range(n_sim)])
    lo_tail = sps.binom.cdf(counts, n, z)
    hi_tail = sps.binom.sf(counts - 1, n, z)
    gamma_sim = np.min(2 * np.minimum(lo_tail, hi_tail), axis=1)
    gamma = np.quantile(gamma_sim, 1 - level)
    lower = sps.binom.ppf(gamma / 2, n, z) / n
    upper = sps.binom.ppf(1 - gamma / 2, n, z) / n
    return z, lower, upper


def _select(names, p, max_panels):
    order = list(np.argsort(p))
    joint = [names.index(k) for k in ("log_q", "obs_misfit") if k in names]
    order = joint + [j for j in order if j not in joint]
    return order[:max_panels]


def _grid(k):
    cols = min(4, k)
    rows = int(np.ceil(k / cols))
    return rows, cols


def plot_rank_histograms(sbc_result, path: str, max_panels: int = 12, level: float = 0.99) -> str:
    """Rank histograms of the statistics with the smallest p-values (the joint ones, log q
    and the observation misfit, first)."""
    d = sbc_result.details
    counts, names, p = np.asarray(d["counts"]), d["statistics"], np.asarray(d["p"], dtype=float)
    N, B = d["n_runs"], d["n_bins"]
    lo, hi = binomial_band(N, B, level)
    sel = _select(names, p, max_panels)
    rows, cols = _grid(len(sel))
    fig, axes = _figure(rows, cols, (3.2 * cols, 2.4 * rows))
    for ax, i in zip(axes.ravel(), sel):
        ax.axhspan(lo, hi, color="0.85", label=f"{level:.0%} binomial band")
        ax.axhline(N / B, color="0.5", lw=0.8)
        ax.bar(np.arange(B), counts[i], width=0.9, color="C0")
        ax.set_title(f"{names[i]}  p={p[i]:.2g}", fontsize=9)
        ax.set_xticks([])
    for ax in axes.ravel()[len(sel):]:
        ax.axis("off")
    fig.suptitle(f"SBC rank histograms ({N} runs, L={d['n_draws']}, {B} bins)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_ecdf_difference(u, sbc_result, path: str, max_panels: int = 12, level: float = 0.99,
                         n_sim: int = 2000) -> str:
    """ECDF(u) − u of the randomised normalised ranks with the simultaneous band."""
    d = sbc_result.details
    u = np.asarray(u, dtype=np.float64)
    names, p = d["statistics"], np.asarray(d.get("p", np.ones(u.shape[1])), dtype=float)
    N = u.shape[0]
    z, lower, upper = simultaneous_ecdf_band(N, level, n_sim, n_grid=min(N, 100))
    sel = _select(names, p, max_panels)
    rows, cols = _grid(len(sel))
    fig, axes = _figure(rows, cols, (3.2 * cols, 2.4 * rows))
    for ax, i in zip(axes.ravel(), sel):
        ecdf = np.searchsorted(np.sort(u[:, i]), z, side="right") / N
        ax.fill_between(z, lower - z, upper - z, color="0.85")
        ax.plot(z, ecdf - z, color="C0")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_title(names[i], fontsize=9)
    for ax in axes.ravel()[len(sel):]:
        ax.axis("off")
    fig.suptitle(f"ECDF(u) − u with the simultaneous {level:.0%} band", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_coverage(diagnostics: dict, path: str) -> str:
    """Empirical against nominal coverage (marginal, HPD, TARP)."""
    a = np.asarray(diagnostics["levels"], dtype=float)
    fig, ax = _figure(figsize=(4, 4))
    ax = ax[0, 0]
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
    for key, label in (("coverage", "marginal central intervals"), ("hpd_coverage", "HPD regions (log q)"),
                       ("tarp_ecp", "TARP")):
        if key in diagnostics:
            ax.plot(a, np.asarray(diagnostics[key], dtype=float), marker="o", ms=3, label=label)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("empirical coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _finite(x):
    x = np.asarray([v for v in x if not isinstance(v, str)], dtype=float)
    return x[np.isfinite(x)]


def plot_agreement(result, path: str) -> str:
    """Histogram of per-event max-z and RMS-z, with the tolerance."""
    d = result.details
    fig, ax = _figure()
    ax = ax[0, 0]
    mz, rz = _finite(d.get("max_z", [])), _finite(d.get("rms_z", []))
    hi = max([d["tolerance_sigma"] * 1.5, *(mz.tolist() or [0]), *(rz.tolist() or [0])])
    bins = np.linspace(0, hi, 40)
    ax.hist(mz, bins=bins, alpha=0.7, label="max-z per event")
    ax.hist(rz, bins=bins, alpha=0.7, label="RMS-z per event")
    ax.axvline(d["tolerance_sigma"], color="k", ls="--", label="tolerance")
    ax.set_xlabel("|μ_head − μ_oracle| / σ_oracle")
    ax.set_ylabel("events")
    ax.legend(fontsize=8)
    ax.set_title(f"posterior agreement: {d.get('fraction', float('nan')):.1%} within tolerance", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_probe_errors(result, path: str) -> str:
    """Histogram (log x) of per-probe relative errors and per-event operator ratios."""
    d = result.details
    fig, ax = _figure()
    ax = ax[0, 0]
    pe, r = _finite(d.get("probe_errors", [])), _finite(d.get("ratio", []))
    both = np.concatenate([pe, r, [result.threshold]])
    pos = both[both > 0]
    lo, hi = (pos.min(), pos.max()) if pos.size else (1e-3, 1.0)
    bins = np.logspace(np.log10(lo) - 0.1, np.log10(hi) + 0.1, 40)
    if pe.size:
        ax.hist(np.maximum(pe, lo), bins=bins, alpha=0.7, label="per-probe ‖(J_f−J_o)v‖/‖J_o v‖")
        ax.hist(np.maximum(r, lo), bins=bins, alpha=0.7, label="per-event ‖J_f−J_o‖/‖J_o‖ (power)")
        ax.axvline(result.threshold, color="k", ls="--", label="threshold")
    else:  # the dense Frobenius comparison: per-event ratios, pooled statistic and tail bound
        ax.hist(np.maximum(r, lo), bins=bins, alpha=0.7, label="per-event debiased ‖J_f−J_ref‖_F/‖J_ref‖_F")
        ax.axvline(result.threshold, color="k", ls="--", label="threshold (pooled)")
        if "adjoint_tail" in d:
            ax.axvline(d["adjoint_tail"], color="r", ls=":", label="tail bound (every event)")
    ax.set_xscale("log")
    ax.set_xlabel("relative error")
    ax.legend(fontsize=7)
    ax.set_title(f"{result.name}: statistic {result.statistic:.3g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def gate_figures(figure_dir: str, agreement=None, adjoint=None, sbc_result=None, sbc_u=None,
                 diagnostics=None, config=None) -> list[str]:
    """Write every figure that the given results allow into ``figure_dir``; returns paths."""
    os.makedirs(figure_dir, exist_ok=True)
    level = config.band_level if config else 0.99
    n_sim = config.band_simulations if config else 2000
    paths = []
    if sbc_result is not None and "counts" in sbc_result.details:
        paths.append(plot_rank_histograms(sbc_result, os.path.join(figure_dir, "sbc_rank_histograms.png"),
                                          level=level))
        if sbc_u is not None:
            paths.append(plot_ecdf_difference(sbc_u, sbc_result, os.path.join(figure_dir, "sbc_ecdf_difference.png"),
                                              level=level, n_sim=n_sim))
    if diagnostics is not None and "coverage" in diagnostics:
        paths.append(plot_coverage(diagnostics, os.path.join(figure_dir, "coverage.png")))
    if agreement is not None and "max_z" in agreement.details:
        paths.append(plot_agreement(agreement, os.path.join(figure_dir, "agreement_z.png")))
    if adjoint is not None and "ratio" in adjoint.details:
        paths.append(plot_probe_errors(adjoint, os.path.join(figure_dir, "adjoint_probe_errors.png")))
    return paths
