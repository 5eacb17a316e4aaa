"""DAPPER's EnKF and iEnKS on a truth and observations given to it: the side-by-side
baselines of ``benchmarks/cycling.py`` (run by the interpreter of a separate environment
holding DAPPER, ``make dapper-venv``; never imported by vardax_core or by the main
environment).

Run: <dapper python> benchmarks/_dapper_baseline.py IN.npz

``IN.npz`` holds ``truth`` (K·s + 1, Nx): the truth at every model step, ``truth[0]`` the
initial truth and ``truth[c·s]`` the truth of cycle c; ``y`` (K, p) the observations of
cycles 1 … K of the variables ``obs_inds`` (p,) (identity operator on them, no missing
values); ``steps_per_cycle`` (s), ``dt``, ``noise_std``, ``background`` (Nx,),
``background_std``, ``n_members``, ``burn_in``, ``method`` ("EnKF" or "iEnKS") and
``settings`` (one run per entry):

- EnKF: ``settings`` is a list of inflations; DAPPER's square-root EnKF
  ``EnKF('Sqrt', N, infl, rot=True)`` (Sakov, Oke & Brassington 2008, the set-up of its
  ``mods/Lorenz96/sakov2008.py``);
- iEnKS: ``settings`` is a list of windows (cycles); DAPPER's iterative ensemble Kalman
  smoother ``iEnKS('Sqrt', N, Lag, xN=2)`` — the configuration its ``sakov2008.py``
  lists for Bocquet & Sakov (2013), with the finite-size (EnKF-N) inflation, so no
  inflation is tuned.

Each run uses DAPPER's Lorenz-96 model (RK4 steps of ``dt``, F = 8), R = noise_std² I and
the initial ensemble drawn from N(background, background_std² I). Prints one JSON object:
DAPPER's version and, per run, the time-averaged analysis RMSE over cycles after
``burn_in`` (mean over cycles of sqrt(mean_i (μ_i − x_i)²), the formula of
``CycleResult.summary``, with μ DAPPER's analysis mean at the observation times), the mean
spread sqrt(mean_i σ_i²) with σ DAPPER's ensemble std, the fraction of (cycle, component)
with |μ − x| ≤ 1.645 σ, and the wall time.
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

METHODS = ("EnKF", "iEnKS")


def _method(name: str, n_members: int, setting: float):
    import dapper.da_methods as da

    if name == "EnKF":
        return da.EnKF("Sqrt", N=n_members, infl=float(setting), rot=True)
    return da.iEnKS("Sqrt", N=n_members, Lag=int(setting), xN=2.0)


def run(data) -> dict:
    import dapper
    import dapper.mods as modelling
    from dapper.mods.Lorenz96 import step
    from dapper.tools import progressbar, seeding

    progressbar.disable_progbar = True  # the progress bar costs as much as the EnKF at N = 40

    method = str(data["method"])
    if method not in METHODS:
        raise ValueError(f"_dapper_baseline: `method` must be one of {METHODS}, got {method!r}")
    truth, y = np.asarray(data["truth"], float), np.asarray(data["y"], float)
    obs_inds = np.asarray(data["obs_inds"], int)
    s = int(data["steps_per_cycle"])
    K = y.shape[0]
    Nx = truth.shape[1]
    if truth.shape != (K * s + 1, Nx):
        raise ValueError(f"_dapper_baseline: `truth` must be (K·s + 1, Nx) = {(K * s + 1, Nx)}, got {truth.shape}")
    if y.shape != (K, obs_inds.size):
        raise ValueError(f"_dapper_baseline: `y` must be (K, len(obs_inds)) = {(K, obs_inds.size)}, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("_dapper_baseline: `y` has missing values; these baselines take complete observations only")
    burn_in = int(data["burn_in"])
    # K cycles of s steps, one observation per cycle at its end (Chronology: Ko + 1 observations)
    tseq = modelling.Chronology(float(data["dt"]), dko=s, Ko=K - 1, BurnIn=0)
    dyn = modelling.Operator(M=Nx, model=step, noise=0)
    obs = modelling.Operator(**modelling.partial_Id_Obs(Nx, obs_inds), noise=float(data["noise_std"]) ** 2)
    x0 = modelling.GaussRV(mu=np.asarray(data["background"], float), C=float(data["background_std"]) ** 2)
    hmm = modelling.HiddenMarkovModel(dyn, obs, tseq, x0)
    out = {"dapper": dapper.__version__, "method": method, "n_members": int(data["n_members"]), "runs": []}
    truth_a = truth[s::s]  # the truth of cycles 1 … K
    for setting in np.asarray(data["settings"], float):
        seeding.set_seed(3000)  # the initial ensemble and the rotations (DAPPER refuses seed 0)
        xp = _method(method, int(data["n_members"]), setting)
        t = time.perf_counter()
        xp.assimilate(hmm, truth, y, liveplots=False)
        seconds = time.perf_counter() - t
        mu = np.asarray(xp.stats.mu.a)[:, :Nx]
        sd = np.asarray(xp.stats.spread.a)[:, :Nx]
        if mu.shape != (K, Nx):
            raise RuntimeError(f"_dapper_baseline: DAPPER's analysis means have shape {mu.shape}, expected {(K, Nx)}")
        err = mu - truth_a
        sl = slice(burn_in, None)
        rmse = float(np.mean(np.sqrt(np.mean(err[sl] ** 2, axis=1))))
        spread = float(np.mean(np.sqrt(np.mean(sd[sl] ** 2, axis=1))))
        out["runs"].append({
            "setting": float(setting), "rmse_a": rmse, "spread_a": spread, "spread_ratio": spread / rmse,
            "coverage_90": float(np.mean(np.abs(err[sl]) <= 1.645 * sd[sl])), "seconds": seconds,
            "per_analysis_s": seconds / K,
        })
    return out


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: _dapper_baseline.py IN.npz")
    with np.load(argv[0]) as data:
        result = run(dict(data))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
