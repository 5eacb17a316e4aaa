"""Gate 3 — simulation-based calibration (Talts et al. 2018).

N runs: x_n ~ p(x) (the problem's prior), (y_n, mask_n) simulated from x_n, L draws
x_n^(l) ~ q(x | y_n). For every statistic s — each state component and, when the head
has a density, log q(· | y_n) — the rank of the truth among the draws,

    r_{n,s} = #{l : s(x_n^(l)) < s(x_n)}  ∈ {0, …, L},

is uniform on {0, …, L} for every N exactly when q is the true posterior (ties, which
have probability 0 for a continuous q, are broken uniformly at random). The ranks are
binned into B bins of (L+1)/B rank values each (B must divide L+1, so the bins are
equiprobable under the null); a chi^2 test per statistic (B−1 degrees of freedom),
Holm's step-down correction across the S statistics, and the gate passes when the
smallest Holm-adjusted p-value is > ``sbc_alpha`` (0.01), so the exact posterior is
rejected with probability ≤ 1 %. A KS test of the randomised normalised ranks
u = (r + U)/(L+1), U ~ U(0, 1) (exactly uniform under the null), is reported too.

Everything from the prior draws to the ranks runs in one jitted computation: a
``jax.lax.map`` over runs (one at a time by default, or vmapped blocks of ``sbc_chunk``),
vectorised over the L draws within a run — no Python loop over runs. Run n simulates with ``fold_in(k_sim, n)`` (event n of
``problem.simulate(k_sim, N)``) and draws with ``fold_in(k_draw, n)``, so results do
not depend on the chunk size.

Power (the numbers behind the test sizes). If q has the right mean but its covariance
is c times the true one, a component's normalised rank is u = Φ(z/√c), z ~ N(0, 1), so
P(u ≤ t) = Φ(√c Φ⁻¹(t)). With B = 10 bins:

- c = 0.5 (under-dispersed): outer bins hold 0.182 (vs 0.100), the middle ones 0.071
  — a U-shaped histogram; chi^2 non-centrality λ = N·B·Σ(p_b − 1/B)² = 0.176 N.
- c = 2 (over-dispersed): outer bins 0.035, middle ones 0.140 — a hump; λ = 0.145 N.

At N = 500, a single statistic's chi^2 exceeds the Holm critical value for 11
statistics (p < 0.01/11) with probability 1 − 2e-6 (c = 0.5) and 1 − 7e-5 (c = 2); all
n components (and log q) are miscalibrated together, so the gate rejects in
essentially every seed (finite L = 99 adds binomial noise to u, which the tests
measure). At the production default N = 1000, B = 20, λ ≈ 254 and 152.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps

from ._common import DualJit, check_output, chunked_map, component_names, has_density, nonfinite_reason
from ._config import GateConfig
from ._report import GateResult

NAME = "sbc"
F64 = jnp.float64


class SBCSimulation(NamedTuple):
    """Per-run outputs of the SBC simulation (N runs, S statistics, n state components).

    ``ranks`` (N, S) int in {0..L}; ``u`` (N, S) randomised normalised ranks in (0, 1);
    ``finite`` (N,) whether every draw (and log density) of the run is finite;
    ``tarp`` (N,) the TARP fraction of draws closer than the truth to a random reference
    point (randomised as u); ``truth``, ``post_mean``, ``post_std`` (N, n) the truth and
    the mean / std of the L draws.
    """

    ranks: jax.Array
    u: jax.Array
    finite: jax.Array
    tarp: jax.Array
    truth: jax.Array
    post_mean: jax.Array
    post_std: jax.Array


def _rank(draws, truth, u_tie, u_jitter):
    """Ranks of ``truth`` (S,) among ``draws`` (L, S), ties broken uniformly at random
    with the uniforms ``u_tie`` (S,), and the randomised normalised ranks
    (rank + ``u_jitter``)/(L + 1)."""
    less = jnp.sum(draws < truth, axis=0)
    ties = jnp.sum(draws == truth, axis=0)
    tie = jnp.floor(u_tie * (ties + 1)).astype(less.dtype)
    rank = less + jnp.minimum(tie, ties)
    return rank.astype(jnp.int32), (rank + u_jitter) / (draws.shape[0] + 1)


def sbc_run(posterior, problem, sim_key, draw_key, uniforms, z_ref, n_draws: int, density: bool):
    """One SBC run: traceable and vmappable. ``sim_key`` simulates (x, y, mask),
    ``draw_key`` draws from the posterior; ``uniforms`` (2S + 1,) break ties, randomise
    the ranks and the TARP fraction; ``z_ref`` (n,) whitens the TARP reference point.
    Returns the fields of one row of :class:`SBCSimulation`."""
    x, y, mask = problem.simulate_one(sim_key)
    state_shape = problem.state_shape
    draws = posterior.sample(y[None], mask[None], draw_key, n_draws)
    check_output("posterior.sample(y, mask, key, n)", draws, (1, n_draws, *state_shape))
    draws = draws[0].reshape(n_draws, -1).astype(F64)
    truth = x.reshape(-1).astype(F64)
    # the observation misfit ½‖m ⊙ (y − H M(x))‖²_{R⁻¹} of the truth and of every draw:
    # a data-dependent statistic that sees a wrong joint (e.g. dropped correlations)
    misfit = jax.vmap(lambda xx: problem.obs_misfit(xx.reshape(state_shape), y, mask).astype(F64))(
        jnp.concatenate([truth[None], draws]).astype(problem.prior.mean.dtype))
    stat_draws = jnp.concatenate([draws, misfit[1:, None]], axis=1)
    stat_truth = jnp.concatenate([truth, misfit[:1]])
    finite = jnp.all(jnp.isfinite(draws)) & jnp.all(jnp.isfinite(misfit))
    if density:
        def lq(xx):
            out = posterior.log_prob(xx.reshape(1, *state_shape), y[None], mask[None])
            check_output("posterior.log_prob(x, y, mask)", out, (1,))
            return out[0].astype(F64)

        # truth and draws in one vmap; y is not batched, so the head's encoder runs once
        lqs = jax.vmap(lq)(jnp.concatenate([truth[None], draws]))
        stat_draws = jnp.concatenate([stat_draws, lqs[1:, None]], axis=1)
        stat_truth = jnp.concatenate([stat_truth, lqs[:1]])
        finite = finite & jnp.all(jnp.isfinite(lqs))
    S = stat_truth.shape[0]
    rank, u = _rank(stat_draws, stat_truth, uniforms[:S], uniforms[S:2 * S])
    # TARP (Lemos et al. 2023): distances, in prior-standardised units, to a reference
    # point drawn from the prior.
    prior = problem.prior
    scale = jnp.sqrt(prior.cov.variance().reshape(-1)).astype(F64)
    ref = (prior.mean + prior.B_sqrt(z_ref.reshape(state_shape).astype(prior.mean.dtype))).reshape(-1)
    d_draw = jnp.sqrt(jnp.sum(((draws - ref) / scale) ** 2, axis=1))
    d_truth = jnp.sqrt(jnp.sum(((truth - ref) / scale) ** 2))
    tarp = (jnp.sum(d_draw < d_truth) + uniforms[2 * S]) / (n_draws + 1)
    return {"ranks": rank, "u": u, "finite": finite, "tarp": tarp, "truth": truth,
            "post_mean": jnp.mean(draws, axis=0), "post_std": jnp.std(draws, axis=0, ddof=1)}


def sbc_simulation_arrays(posterior, problem, key, n_runs: int, n_draws: int, chunk: int, density: bool) -> dict:
    """All N runs, ``chunk`` at a time: traceable and vmappable over ``key`` (the power
    studies vmap over seeds). Run n simulates with ``fold_in(k_sim, n)`` — event n of
    ``problem.simulate(k_sim, N)`` — and draws with ``fold_in(k_draw, n)``; the
    remaining randomness is drawn for all runs at once (few random-number call sites
    keep compilation fast)."""
    k_sim, k_draw, k_u, k_z = jax.random.split(key, 4)
    runs = jnp.arange(n_runs)
    n_stats = problem.n_state + 1 + (1 if density else 0)
    xs = (jax.vmap(jax.random.fold_in, (None, 0))(k_sim, runs),
          jax.vmap(jax.random.fold_in, (None, 0))(k_draw, runs),
          jax.random.uniform(k_u, (n_runs, 2 * n_stats + 1), F64),
          jax.random.normal(k_z, (n_runs, problem.n_state), F64))
    return chunked_map(lambda a: sbc_run(posterior, problem, *a, n_draws, density), xs, chunk)


_simulate_jit = DualJit(sbc_simulation_arrays)


def simulate_sbc(posterior, problem, key, config: GateConfig | None = None) -> SBCSimulation:
    """Run the SBC simulation for ``posterior`` on ``problem`` (jitted end to end)."""
    config = config or GateConfig()
    out = _simulate_jit(config.fast_compile, posterior, problem, key, int(config.sbc_runs), int(config.sbc_draws),
                        config.chunk("sbc_chunk"), has_density(posterior))
    return SBCSimulation(**out)


def statistic_names(posterior, problem) -> list[str]:
    return component_names(problem.state_shape) + ["obs_misfit"] + (["log_q"] if has_density(posterior) else [])


# ---- the uniformity tests ------------------------------------------------------------------------

def holm(p):
    """Holm step-down adjusted p-values along the last axis (JAX; vmappable)."""
    m = p.shape[-1]
    order = jnp.argsort(p, axis=-1)
    ps = jnp.take_along_axis(p, order, axis=-1)
    adj = jnp.minimum(1.0, jax.lax.cummax((m - jnp.arange(m)) * ps, axis=ps.ndim - 1))
    inv = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(adj, inv, axis=-1)


def rank_uniformity(ranks, u, n_draws: int, n_bins: int) -> dict:
    """chi^2 and KS statistics of ranks (N, S) in {0..L} and randomised ranks u (N, S),
    per statistic (JAX, vmappable over leading batch axes via ``jax.vmap``).

    Returns ``counts`` (S, B), ``chi2`` (S,), ``p`` (S,) = P(chi^2_{B−1} > chi2),
    ``holm`` (S,) Holm-adjusted p, ``ks`` (S,) the KS distance of u from U(0, 1).
    """
    if (n_draws + 1) % n_bins:
        raise ValueError(f"`n_bins` ({n_bins}) must divide L + 1 ({n_draws + 1})")
    N = ranks.shape[0]
    width = (n_draws + 1) // n_bins
    counts = jax.vmap(lambda r: jnp.bincount(r // width, length=n_bins), in_axes=1)(ranks).astype(F64)
    expected = N / n_bins
    chi2 = jnp.sum((counts - expected) ** 2, axis=1) / expected
    p = jax.scipy.stats.chi2.sf(chi2, n_bins - 1)
    us = jnp.sort(u, axis=0)
    i = jnp.arange(1, N + 1, dtype=F64)[:, None]
    ks = jnp.maximum(jnp.max(i / N - us, axis=0), jnp.max(us - (i - 1) / N, axis=0))
    return {"counts": counts, "chi2": chi2, "p": p, "holm": holm(p), "ks": ks}


_rank_uniformity_jit = jax.jit(rank_uniformity, static_argnums=(2, 3))


def ks_pvalue(ks, n: int):
    """Two-sided exact KS p-value (SciPy's ``kstwo``), as ``scipy.stats.kstest``."""
    return sps.kstwo.sf(np.asarray(ks, dtype=np.float64), n)


def sbc_gate(sim: SBCSimulation, config: GateConfig, names: list[str] | None = None) -> GateResult:
    """The SBC gate from a simulation: passes when the smallest Holm-adjusted chi^2
    p-value is > ``sbc_alpha``; any non-finite draw or log density fails it."""
    alpha, L, B = config.sbc_alpha, config.sbc_draws, config.sbc_bins
    ranks, u, finite = np.asarray(sim.ranks), np.asarray(sim.u), np.asarray(sim.finite)
    N, S = ranks.shape
    names = names or [f"s{i}" for i in range(S)]
    if len(names) != S:
        raise ValueError(f"`names` has {len(names)} entries for {S} statistics")
    base = {"rule": "min Holm-adjusted chi² p > alpha", "alpha": alpha, "n_runs": N, "n_draws": L,
            "n_bins": B, "statistics": names}
    if not finite.all():
        return GateResult(NAME, False, math.nan, alpha,
                          {**base, "reason": nonfinite_reason("posterior draws or log densities", ~finite, N, "run")})
    st = {k: np.asarray(v, dtype=np.float64) for k, v in _rank_uniformity_jit(ranks, u, L, B).items()}
    ks_p = ks_pvalue(st["ks"], N)
    stat = float(np.min(st["holm"]))
    worst = int(np.argmin(st["p"]))
    passed = stat > alpha
    details = {
        **base,
        "counts": st["counts"].astype(np.int64),
        "chi2": st["chi2"],
        "df": B - 1,
        "p": st["p"],
        "holm_p": st["holm"],
        "ks": st["ks"],
        "ks_p": ks_p,
        "ks_holm_p": np.asarray(holm(jnp.asarray(ks_p))),
        "worst_statistic": names[worst],
        "summary": f"{N} runs × {L} draws, {S} statistics; worst {names[worst]}: chi² {st['chi2'][worst]:.1f} "
                   f"(df {B - 1}), p {st['p'][worst]:.3g}, Holm p {stat:.3g}",
    }
    if not passed:
        n_rej = int(np.sum(st["holm"] <= alpha))
        details["reason"] = (f"{n_rej} of {S} statistics have non-uniform ranks (Holm p <= {alpha:g}); "
                             f"worst {names[worst]} with Holm p {stat:.3g}")
    return GateResult(NAME, passed, stat, alpha, details)


def sbc(posterior, problem, key, config: GateConfig | None = None) -> GateResult:
    """Gate 3: simulation-based calibration of ``posterior`` on ``problem``'s prior and
    simulator (see the module docstring)."""
    config = config or GateConfig()
    return sbc_gate(simulate_sbc(posterior, problem, key, config), config, statistic_names(posterior, problem))
