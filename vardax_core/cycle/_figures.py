"""Figures of a cycled run (matplotlib's Agg canvas, PNG): RMSE and spread over the
cycles, and the PIT (rank) histogram of the truth."""

from __future__ import annotations

import os

import numpy as np

from ..gates._figures import _figure, binomial_band
from ._driver import PIT_BINS


def cycle_figures(figure_dir: str, cycle_length: float, series: dict[str, dict], burn_in: int) -> list[str]:
    """``series[method]`` holds the per-cycle ``rmse_a`` and ``spread_a`` and the ``pit``
    values (any shape). Writes ``rmse_spread.png`` (analysis RMSE solid, spread dashed,
    over model time; spin-up shaded) and ``pit.png`` (PIT histogram per method with the
    99 % band of a calibrated method, counting each cycle once per component, which
    makes the band optimistic for correlated components). Returns the paths."""
    os.makedirs(figure_dir, exist_ok=True)
    fig, ax = _figure(figsize=(7, 3.6))
    ax = ax[0, 0]
    for i, (name, s) in enumerate(series.items()):
        t = cycle_length * np.arange(1, len(s["rmse_a"]) + 1)
        (line,) = ax.plot(t, s["rmse_a"], lw=0.8, label=f"{name} RMSE")
        ax.plot(t, s["spread_a"], lw=0.8, ls="--", color=line.get_color(), label=f"{name} spread")
    ax.axvspan(0, cycle_length * burn_in, color="0.9", zorder=-1)
    ax.set_yscale("log")
    ax.set_xlabel("model time")
    ax.set_ylabel("analysis RMSE / spread")
    ax.legend(fontsize=6, ncol=2)
    paths = [os.path.join(figure_dir, "rmse_spread.png")]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    n = len(series)
    fig, axes = _figure(1, n, figsize=(2.6 * n, 2.6))
    for ax, (name, s) in zip(axes[0], series.items()):
        pit = np.asarray(s["pit"])[burn_in:].reshape(-1)
        counts = np.histogram(pit, bins=PIT_BINS, range=(0, 1))[0]
        lo, hi = binomial_band(pit.size, PIT_BINS)
        ax.bar((np.arange(PIT_BINS) + 0.5) / PIT_BINS, counts, width=1 / PIT_BINS, color="0.6")
        ax.axhspan(lo, hi, color="tab:blue", alpha=0.15)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("PIT of the truth")
    paths.append(os.path.join(figure_dir, "pit.png"))
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    return paths
