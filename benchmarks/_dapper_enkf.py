"""DAPPER's EnKF on a truth and observations given to it: the side-by-side baseline of
``benchmarks/cycling.py`` (run by the interpreter of a separate environment holding DAPPER,
``make dapper-venv``; never imported by vardax_core or by the main environment).

Run: <dapper python> benchmarks/_dapper_enkf.py IN.npz

``IN.npz`` holds ``truth`` (K+1, Nx) with ``truth[0]`` the initial truth, ``y`` (K, Nx)
the observations of cycles 1 … K (all variables, identity operator), ``background``
(Nx,), ``background_std``, ``dt``, ``noise_std``, ``n_members``, ``inflations`` (the grid
to run), ``burn_in``. For each inflation, DAPPER's square-root EnKF (``EnKF('Sqrt', N,
infl, rot=True)``: Sakov, Oke & Brassington 2008, the set-up of its
``mods/Lorenz96/sakov2008.py``) runs the Lorenz-96 model of DAPPER (one RK4 step of ``dt``
per cycle, F = 8) with R = noise_std² I and the initial ensemble drawn from N(background,
background_std² I). Prints one JSON object: DAPPER's version and, per inflation, the
time-averaged analysis RMSE over cycles after ``burn_in`` (mean over cycles of
sqrt(mean_i (μ_i − x_i)²), the formula of ``CycleResult.summary``), the mean spread
sqrt(mean_i σ_i²) with σ DAPPER's ensemble std, the fraction of (cycle, component) with
|μ − x| ≤ 1.645 σ, and the wall time.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DAPPER_LIVEPLOTTING", "no")
os.environ.setdefault("DAPPER_DATA_ROOT", os.environ.get("VARDAX_HOME", "."))

import numpy as np


def run(data) -> dict:
    import dapper
    import dapper.da_methods as da
    import dapper.mods as modelling
    from dapper.mods.Lorenz96 import step
    from dapper.tools import progressbar, seeding

    progressbar.disable_progbar = True  # the progress bar costs as much as the EnKF at N = 40

    truth, y = np.asarray(data["truth"], float), np.asarray(data["y"], float)
    K, Nx = y.shape
    if truth.shape != (K + 1, Nx):
        raise ValueError(f"_dapper_enkf: `truth` must be (K + 1, Nx) = {(K + 1, Nx)}, got {truth.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("_dapper_enkf: `y` has missing values; this baseline takes fully observed twins only")
    burn_in = int(data["burn_in"])
    # K cycles, one observation per cycle at k = 1 … K (Chronology: Ko + 1 observations)
    tseq = modelling.Chronology(float(data["dt"]), dko=1, Ko=K - 1, BurnIn=0)
    dyn = modelling.Operator(M=Nx, model=step, noise=0)
    obs = modelling.Operator(**modelling.partial_Id_Obs(Nx, np.arange(Nx)), noise=float(data["noise_std"]) ** 2)
    x0 = modelling.GaussRV(mu=np.asarray(data["background"], float), C=float(data["background_std"]) ** 2)
    hmm = modelling.HiddenMarkovModel(dyn, obs, tseq, x0)
    out = {"dapper": dapper.__version__, "n_members": int(data["n_members"]), "runs": []}
    for infl in np.asarray(data["inflations"], float):
        seeding.set_seed(3000)  # the initial ensemble and the rotations (DAPPER refuses seed 0)
        xp = da.EnKF("Sqrt", N=int(data["n_members"]), infl=float(infl), rot=True)
        t = time.perf_counter()
        xp.assimilate(hmm, truth, y, liveplots=False)
        seconds = time.perf_counter() - t
        mu = np.asarray(xp.stats.mu.a)[:, :Nx]
        sd = np.asarray(xp.stats.spread.a)[:, :Nx]
        if mu.shape != (K, Nx):
            raise RuntimeError(f"_dapper_enkf: DAPPER's analysis means have shape {mu.shape}, expected {(K, Nx)}")
        err = mu - truth[1:]
        s = slice(burn_in, None)
        rmse = float(np.mean(np.sqrt(np.mean(err[s] ** 2, axis=1))))
        spread = float(np.mean(np.sqrt(np.mean(sd[s] ** 2, axis=1))))
        out["runs"].append({
            "inflation": float(infl), "rmse_a": rmse, "spread_a": spread, "spread_ratio": spread / rmse,
            "coverage_90": float(np.mean(np.abs(err[s]) <= 1.645 * sd[s])), "seconds": seconds,
            "per_analysis_s": seconds / K,
        })
    return out


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: _dapper_enkf.py IN.npz")
    with np.load(argv[0]) as data:
        result = run(dict(data))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
