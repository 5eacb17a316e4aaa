"""Twins of published Lorenz-96 set-ups (N = 40, F = 8, RK4 with dt = 0.05), by name,
with the time-averaged analysis RMSE the literature reports for each method."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..problems import GaussianNoise, Lorenz96, Subsample, free_run_climatology
from ._twin import TwinSetup


@dataclasses.dataclass(frozen=True)
class PublishedTwin:
    """A named twin experiment: observe every ``obs_stride``-th variable every
    ``steps_per_cycle`` model steps with error std ``noise_std``; ``published`` maps a
    method to its reported time-averaged analysis RMSE (after spin-up) in ``source``."""

    name: str
    description: str
    steps_per_cycle: int
    obs_stride: int
    noise_std: float
    n_cycles: int
    burn_in: int
    published: dict
    source: str

    def setup(self, n_cycles: int | None = None, burn_in: int | None = None) -> TwinSetup:
        """The :class:`TwinSetup` (optionally shorter, e.g. for a quick run)."""
        model = Lorenz96(n=40, forcing=8.0, dt=0.05)
        n_cycles = self.n_cycles if n_cycles is None else n_cycles
        burn_in = min(self.burn_in, n_cycles // 10) if burn_in is None else burn_in
        return TwinSetup(model, Subsample((40,), self.obs_stride), GaussianNoise(self.noise_std),
                         self.steps_per_cycle, n_cycles, burn_in)


PUBLISHED_TWINS: dict[str, PublishedTwin] = {
    t.name: t
    for t in (
        PublishedTwin(
            "l96_full_dt005", "all 40 variables observed every dt = 0.05, R = I",
            steps_per_cycle=1, obs_stride=1, noise_std=1.0, n_cycles=5000, burn_in=500,
            published={"climatology": 3.6, "optimal interpolation": 0.95, "3D-Var": 0.41, "EnKF": 0.18},
            source="Sakov, Oke & Brassington (2008); DAPPER's benchmark of that set-up",
        ),
        PublishedTwin(
            "l96_full_dt02", "all 40 variables observed every 0.2 time units (4 steps), R = I",
            steps_per_cycle=4, obs_stride=1, noise_std=1.0, n_cycles=2000, burn_in=200,
            published={"4D-Var, window 1 cycle": 0.46, "4D-Var, window 2 cycles": 0.39,
                       "4D-Var, window 4 cycles": 0.37, "4D-Var, window 6 cycles": 0.385,
                       "iEnKS (N = 20, window 4)": 0.31},
            source="Bocquet & Sakov (2013)",
        ),
        PublishedTwin(
            "l96_half_dt005", "every second variable observed every dt = 0.05, R = 2.25 I",
            steps_per_cycle=1, obs_stride=2, noise_std=1.5, n_cycles=5000, burn_in=500,
            published={"iEnKS": 0.45},
            source="Bocquet & Sakov (2013)",
        ),
    )
}


def get_twin(name: str) -> PublishedTwin:
    if name not in PUBLISHED_TWINS:
        raise ValueError(f"unknown twin {name!r}; known: {', '.join(sorted(PUBLISHED_TWINS))}")
    return PUBLISHED_TWINS[name]


def lorenz96_climatology(n_steps: int = 20000, spinup: int = 2000):
    """A free Lorenz-96 run (N = 40, F = 8, dt = 0.05) from the rest state with x_0 nudged
    by 0.01 (as the registered lorenz96 problems): (states after ``spinup`` (n_steps −
    spinup, 40), climatological mean (40,) and covariance (40, 40)) — the climatology and
    the source of initial truths."""
    x = np.full(40, 8.0)
    x[0] += 0.01
    return free_run_climatology(Lorenz96(), x, n_steps, spinup)
