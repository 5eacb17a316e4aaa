"""Gate 1 — posterior agreement with the oracle, event by event.

For event e and state component i,

    z_{e,i} = |mu_amort,e,i - mu_oracle,e,i| / sigma_oracle,e,i .

Event e *agrees* when max_i z_{e,i} <= ``tolerance_sigma`` (1.0); the gate passes when
the fraction of agreeing events is >= ``min_fraction`` (0.95). The statistic is that
fraction, the threshold ``min_fraction``; per-event max-z and RMS-z are reported.

A head that returns a non-finite estimate for any event fails (reason in
``details["reason"]``): a head that sometimes emits NaN is not promotable however
many other events agree. Invalid oracle inputs (non-finite mean, non-positive or
non-finite std) are an error, not a failed gate.

Power. For the exact posterior z = 0 (up to rounding), so it always passes. A mean
that is off by exactly +1 sigma_oracle in every component sits *on* the tolerance
(z_i = 1 = tolerance_sigma, which the rule accepts), so the deliberately wrong
posterior of the tests is off by 1 sigma in the RMS sense: delta_i = sigma_i xi_i with
xi ~ N(0, I) drawn per event — the error of a head that returns a posterior draw
instead of the mean. Then P(event agrees) = P(max_i |xi_i| <= 1) = 0.6827^n, which is
0.022 for linear_gaussian (n = 10) and < 1e-6 for Lorenz-96 (n = 40): the agreeing
fraction is ~2 % against a 95 % requirement, and the gate rejects in every seed.
"""

from __future__ import annotations

import numpy as np

from ._common import nonfinite_reason, point_estimates, summary_quantiles
from ._config import GateConfig
from ._report import GateResult

NAME = "posterior_agreement"


def _validate_oracle(oracle_mean, oracle_std, shape):
    for name, a in (("oracle_mean", oracle_mean), ("oracle_std", oracle_std)):
        if a.shape != shape:
            raise ValueError(f"`{name}` must have shape {shape} (same as the estimates), got {a.shape}")
    if not np.all(np.isfinite(oracle_mean)):
        raise ValueError("`oracle_mean` has non-finite values; drop unconverged oracle events first")
    if not np.all(np.isfinite(oracle_std) & (oracle_std > 0)):
        raise ValueError("`oracle_std` must be finite and > 0 for every event and component")


def agreement_from_estimates(estimate, oracle_mean, oracle_std, config: GateConfig | None = None) -> GateResult:
    """The agreement gate on arrays: ``estimate``, ``oracle_mean``, ``oracle_std`` all of
    shape (E, *state)."""
    config = config or GateConfig()
    est = np.asarray(estimate, dtype=np.float64)
    mu = np.asarray(oracle_mean, dtype=np.float64)
    sd = np.asarray(oracle_std, dtype=np.float64)
    if est.ndim < 2:
        raise ValueError(f"`estimate` must be batched, shape (events, *state), got {est.shape}")
    _validate_oracle(mu, sd, est.shape)
    n_events = est.shape[0]
    tol, frac_min = config.tolerance_sigma, config.min_fraction
    rule = "fraction of events with max z <= tolerance_sigma >= min_fraction"
    base = {"rule": rule, "tolerance_sigma": tol, "min_fraction": frac_min, "n_events": n_events}
    if n_events == 0:
        return GateResult(NAME, False, float("nan"), frac_min, {**base, "reason": "no events to compare"})

    z = np.abs(est - mu).reshape(n_events, -1) / sd.reshape(n_events, -1)
    bad = ~np.all(np.isfinite(z), axis=1)
    max_z = np.where(bad, np.inf, np.max(np.where(np.isfinite(z), z, 0.0), axis=1))
    rms_z = np.where(bad, np.inf, np.sqrt(np.mean(np.where(np.isfinite(z), z, 0.0) ** 2, axis=1)))
    agree = max_z <= tol
    fraction = float(np.mean(agree))
    passed = fraction >= frac_min and not bad.any()
    details = {
        **base,
        "n_agree": int(agree.sum()),
        "fraction": fraction,
        "max_z": max_z,
        "rms_z": rms_z,
        "max_z_quantiles": summary_quantiles(max_z),
        "rms_z_quantiles": summary_quantiles(rms_z),
        "worst_event": int(np.argmax(max_z)),
        "summary": f"{int(agree.sum())}/{n_events} events within {tol:g} sigma; median max-z "
                   f"{np.median(max_z):.3g}, median RMS-z {np.median(rms_z):.3g}",
    }
    if bad.any():
        details["reason"] = nonfinite_reason("point estimates", bad, n_events)
    elif not passed:
        details["reason"] = f"only {fraction:.1%} of events agree within {tol:g} sigma (need {frac_min:.0%})"
    return GateResult(NAME, passed, fraction, frac_min, details)


def posterior_agreement(posterior, y, mask, oracle_mean, oracle_std, config: GateConfig | None = None) -> GateResult:
    """Gate 1: the point estimates ``posterior(y, mask)`` against the oracle posterior
    (``oracle_mean``, ``oracle_std``; shapes (E, *state)) on E held-out events. ``y``
    and ``mask`` are (E, T, *obs). Estimates are computed ``config.eval_chunk`` events
    at a time under jit."""
    config = config or GateConfig()
    mu = np.asarray(oracle_mean)
    if mu.ndim < 2:
        raise ValueError(f"`oracle_mean` must be batched, shape (events, *state), got {mu.shape}")
    if np.shape(y)[0] != mu.shape[0] or np.shape(mask)[0] != mu.shape[0]:
        raise ValueError(f"`y`, `mask` and `oracle_mean` must have the same number of events, got "
                         f"{np.shape(y)[0]}, {np.shape(mask)[0]} and {mu.shape[0]}")
    est = point_estimates(posterior, y, mask, mu.shape[1:], config.chunk("eval_chunk"), config.fast_compile)
    return agreement_from_estimates(est, mu, oracle_std, config)
