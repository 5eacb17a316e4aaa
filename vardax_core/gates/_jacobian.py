"""Gate 2 by dense Jacobians: ∂x̂/∂y of the head against a reference, Frobenius-pooled.

For problems whose state and observation window are small enough to hold one dense
Jacobian per event (lorenz96: 40 × 100), the head's Jacobian A_e = ∂x̂/∂y (E, n, m) is
formed exactly by automatic differentiation of its point estimate, and compared with a
reference Jacobian B_e that may carry Monte-Carlo error (the MCMC reference's
Cov(x, G(x) | y) W). Columns at unobserved slots are zeroed in both.

**Statistic.** With V_A, V_B the entry-wise Monte-Carlo variances (0 for an exact
Jacobian), E‖A − B‖²_F = ‖A − B‖²_F,true + ΣV_A + ΣV_B and E‖B‖²_F = ‖B‖²_F,true + ΣV_B,
so the debiased squared errors are

    d_e = ‖A_e − B_e‖²_F − ΣV_A,e − ΣV_B,e,     b_e = ‖B_e‖²_F − ΣV_B,e,

the per-event relative error r_e = √(max(d_e, 0) / b_e) and the **pooled** relative
error R = √(max(Σ_e d_e, 0) / Σ_e b_e) — the root-mean-square relative error of the
sensitivities over the held-out events, with the Monte-Carlo noise of the reference
removed on average rather than left as a floor.

**Rule.** The gate passes when R < ``adjoint_threshold`` (0.05) *and* every event has
r_e < ``adjoint_tail`` (0.25): the pooled bound says the sensitivities are right to 5 %
on average, the tail bound that no event is more than 25 % wrong (a 95th-percentile rule
would let 5 % of events be arbitrarily wrong). Non-finite Jacobians fail with a reason.

Measured on the default lorenz96 problem (``benchmarks/gate_power.py``): two independent
MCMC references of the same 200 events give R ≈ 0.01 (worst event 0.1), the Jacobian
× 1.2 gives R = 0.2; the size and power table is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._common import DualJit, check_output, chunked_map, nonfinite_reason, summary_quantiles
from ._config import GateConfig
from ._report import GateResult

F64 = jnp.float64


def point_jacobian(posterior, y, mask, state_shape) -> jax.Array:
    """The dense Jacobian ∂x̂/∂y of ``posterior``'s point estimate for one event,
    (*state, T, *obs) in float64, columns at unobserved slots zeroed; forward mode (one
    batched jvp per observation slot), which every head supports — the score head's
    sampler, which its point estimate averages, is differentiable forward only."""

    def f(yy):
        out = posterior(yy[None], mask[None])
        check_output("posterior(y, mask)", out, (1, *state_shape))
        return out[0]

    J = jax.jacfwd(f)(y).astype(F64)
    return jnp.where(mask, J, 0.0), jnp.all(jnp.isfinite(f(y)))


def _head_jacobians(posterior, y, mask, state_shape, chunk):
    def one(args):
        yy, mm = args
        J, finite = point_jacobian(posterior, yy, mm, state_shape)
        return {"J": J, "finite": finite}

    return chunked_map(one, (y, mask), chunk)


head_jacobians = DualJit(_head_jacobians)


def compare_jacobians(A, B, var_a=None, var_b=None) -> dict:
    """Per-event debiased Frobenius comparison of candidate Jacobians ``A`` with
    reference Jacobians ``B`` (E, …) (NumPy, float64); ``var_a``, ``var_b``: their
    entry-wise Monte-Carlo variances (None = exact).

    Returns ``d`` (E,) debiased ‖A − B‖²_F, ``b`` (E,) debiased ‖B‖²_F, ``ratio`` (E,)
    r_e = √(max(d, 0)/b) (0 when both vanish, inf when only B does), ``raw_ratio``
    ‖A − B‖_F/‖B‖_F before debiasing, ``noise`` √(ΣV_A + ΣV_B)/‖B‖_F (the Monte-Carlo
    floor the debiasing removed) and ``pooled`` R = √(max(Σd, 0)/Σb).
    """
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.shape != B.shape:
        raise ValueError(f"candidate Jacobians {A.shape} and reference Jacobians {B.shape} differ in shape")
    E = A.shape[0]
    flat = lambda a: a.reshape(E, -1)  # noqa: E731
    va = np.zeros(E) if var_a is None else flat(np.asarray(var_a, np.float64)).sum(axis=1)
    vb = np.zeros(E) if var_b is None else flat(np.asarray(var_b, np.float64)).sum(axis=1)
    diff2 = np.sum(flat(A - B) ** 2, axis=1)
    ref2 = np.sum(flat(B) ** 2, axis=1)
    d, b = diff2 - va - vb, ref2 - vb
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(b > 0, np.sqrt(np.maximum(d, 0.0) / np.where(b > 0, b, 1.0)),
                         np.where(d > 0, np.inf, 0.0))
        raw = np.where(ref2 > 0, np.sqrt(diff2 / np.where(ref2 > 0, ref2, 1.0)), np.where(diff2 > 0, np.inf, 0.0))
        noise = np.where(ref2 > 0, np.sqrt((va + vb) / np.where(ref2 > 0, ref2, 1.0)), 0.0)
        sd, sb = float(np.sum(d)), float(np.sum(b))
        pooled = math.sqrt(max(sd, 0.0) / sb) if sb > 0 else (math.inf if sd > 0 else 0.0)
    return {"d": d, "b": b, "ratio": ratio, "raw_ratio": raw, "noise": noise, "pooled": pooled}


def jacobian_gate(name: str, comparison: dict, config: GateConfig, reference: str, label: str = "event",
                  extra: dict | None = None, valid=None) -> GateResult:
    """The gate from :func:`compare_jacobians`: statistic = the pooled relative error R,
    passes when R < ``adjoint_threshold`` and every r_e < ``adjoint_tail``."""
    thr, tail = config.adjoint_threshold, config.adjoint_tail
    ratio = np.asarray(comparison["ratio"], np.float64)
    n = ratio.shape[0]
    ok_input = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    bad = ~np.isfinite(ratio) | ~np.isfinite(comparison["d"]) | ~ok_input
    details = {
        "rule": f"pooled debiased ‖J_f − J_ref‖_F/‖J_ref‖_F < threshold and every {label}'s < adjoint_tail",
        "statistic_name": "frobenius-pooled",
        "reference": reference,
        "adjoint_tail": tail,
        "n_" + label + "s": n,
        "ratio": ratio,
        "raw_ratio": np.asarray(comparison["raw_ratio"]),
        "mc_noise": np.asarray(comparison["noise"]),
        "ratio_quantiles": summary_quantiles(ratio) if n else {},
        "mc_noise_quantiles": summary_quantiles(comparison["noise"]) if n else {},
        "fraction_below_threshold": float(np.mean(ratio < thr)) if n else math.nan,
        **(extra or {}),
    }
    if n == 0:
        return GateResult(name, False, math.nan, thr, {**details, "reason": f"no {label}s to compare"})
    if bad.any():
        return GateResult(name, False, math.nan, thr,
                          {**details, "reason": nonfinite_reason("estimates or Jacobians", bad, n, label)})
    pooled = float(comparison["pooled"])
    worst = int(np.argmax(ratio))
    details["worst_" + label] = worst
    details["max_ratio"] = float(ratio[worst])
    passed = bool(pooled < thr and ratio[worst] < tail)
    details["summary"] = (f"pooled relative Jacobian error {pooled:.3g} against {reference} over {n} {label}s; "
                          f"median {np.median(ratio):.3g}, worst {ratio[worst]:.3g} ({label} {worst}); "
                          f"reference MC noise median {np.median(comparison['noise']):.3g}")
    if not passed:
        why = []
        if not pooled < thr:
            why.append(f"pooled relative error {pooled:.3g} >= threshold {thr:g}")
        if not ratio[worst] < tail:
            why.append(f"{int(np.sum(ratio >= tail))} {label}(s) at or above the tail bound {tail:g} "
                       f"(worst {ratio[worst]:.3g}, {label} {worst})")
        details["reason"] = "; ".join(why)
    return GateResult(name, passed, pooled, thr, details)
