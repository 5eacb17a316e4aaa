"""Skill on the held-out events, next to the reference posterior's: RMSE and proper scores.

Not gates (they pass or fail nothing): what a DA scientist reads beside them. For E
held-out events with true states x_e (the simulated truth) and K draws X_e,1 … X_e,K of
a posterior:

- RMSE of the point estimate x̂_e: √(mean over events and components of (x̂_e − x_e)²);
- the energy score (Gneiting & Raftery 2007; lower is better, proper for the joint):
  ES_e = (1/K) Σ_k ‖X_e,k − x_e‖ − 1/(2K(K−1)) Σ_{k≠l} ‖X_e,k − X_e,l‖;
- the CRPS, the energy score of each component alone, averaged over components.

Both are averaged over events. The reference (the MCMC posterior stored with the oracle,
``ref_draws`` / ``ref_mean``) is scored the same way on the same events, so ``*_ratio``
says how far the head is from the best any posterior can do; without a stored reference
the oracle's MAP gives the RMSE and the proper scores are the head's alone.
"""

from __future__ import annotations

import jax
import numpy as np

from ._common import check_output, point_estimates


def energy_score(draws, truth) -> np.ndarray:
    """Per-event energy score of ``draws`` (E, K, d) against ``truth`` (E, d) (float64)."""
    X, x = np.asarray(draws, np.float64), np.asarray(truth, np.float64)
    K = X.shape[1]
    if K < 2:
        raise ValueError(f"the energy score needs at least 2 draws per event, got {K}")
    to_truth = np.linalg.norm(X - x[:, None, :], axis=-1).mean(axis=1)
    pair = np.linalg.norm(X[:, :, None, :] - X[:, None, :, :], axis=-1).sum(axis=(1, 2)) / (K * (K - 1))
    return to_truth - 0.5 * pair


def crps(draws, truth) -> np.ndarray:
    """Per-event CRPS of ``draws`` (E, K, d) against ``truth`` (E, d), averaged over the
    d components (the energy score of each component on its own)."""
    X, x = np.asarray(draws, np.float64), np.asarray(truth, np.float64)
    K = X.shape[1]
    if K < 2:
        raise ValueError(f"the CRPS needs at least 2 draws per event, got {K}")
    to_truth = np.abs(X - x[:, None, :]).mean(axis=1)
    pair = np.abs(X[:, :, None, :] - X[:, None, :, :]).sum(axis=(1, 2)) / (K * (K - 1))
    return (to_truth - 0.5 * pair).mean(axis=-1)


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def skill_scores(posterior, data: dict, sel, key, *, n_draws: int = 32, chunk: int = 16,
                 fast_compile: bool = False) -> dict:
    """RMSE, energy score and CRPS of ``posterior`` on the events ``sel`` of the oracle
    arrays ``data`` (from ``read_oracle``: needs ``x_true``, ``y``, ``mask``, ``mean``; uses
    ``ref_mean`` / ``ref_draws`` when stored), with ``n_draws`` draws per event (key
    ``fold_in(key, e)`` for event e). Returns a flat dict of floats."""
    sel = np.asarray(sel)
    E = int(sel.size)
    if E == 0:
        return {"n_events": 0}
    x_true = np.asarray(data["x_true"])[sel].reshape(E, -1)
    y, mask = np.asarray(data["y"])[sel], np.asarray(data["mask"])[sel]
    state_shape = np.asarray(data["x_true"]).shape[1:]
    est = np.asarray(point_estimates(posterior, y, mask, state_shape, chunk, fast_compile)).reshape(E, -1)
    draws = []
    for e in range(E):
        d = posterior.sample(y[e:e + 1], mask[e:e + 1], jax.random.fold_in(key, e), n_draws)
        check_output("posterior.sample(y, mask, key, n)", d, (1, n_draws, *state_shape))
        draws.append(np.asarray(d, np.float64).reshape(n_draws, -1))
    draws = np.stack(draws)
    out = {
        "n_events": E, "n_draws": n_draws,
        "rmse": _rmse(est, x_true),
        "energy_score": float(energy_score(draws, x_true).mean()),
        "crps": float(crps(draws, x_true).mean()),
        "rmse_map": _rmse(np.asarray(data["mean"])[sel].reshape(E, -1), x_true),
    }
    if "ref_mean" in data:
        out["rmse_reference"] = _rmse(np.asarray(data["ref_mean"])[sel].reshape(E, -1), x_true)
        out["rmse_ratio"] = out["rmse"] / out["rmse_reference"]
    if "ref_draws" in data:
        ref = np.asarray(data["ref_draws"], np.float64)[sel].reshape(E, -1, x_true.shape[1])
        out["energy_score_reference"] = float(energy_score(ref, x_true).mean())
        out["crps_reference"] = float(crps(ref, x_true).mean())
        out["energy_score_ratio"] = out["energy_score"] / out["energy_score_reference"]
    return out
