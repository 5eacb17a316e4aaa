"""Step 4: 4DVar with the emulator in place of the physics, gated against the oracle.

The oracle's solvers are not touched: the analysis runs on ``problem.with_forward(
emulator)`` (:func:`emulated_problem`), the same solver object, the same Laplace
posterior. The gate is DESIGN's agreement rule, computed by the gates package's
:func:`~vardax_core.gates.agreement_from_estimates`: an event agrees when
max_i |μ_emu,i − μ_oracle,i| / σ_oracle,i ≤ ``tolerance_sigma`` (1), and the gate
passes when at least ``min_fraction`` (95 %) of held-out events agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..gates import GateConfig, GateResult, agreement_from_estimates, read_oracle
from ..gates._common import summary_quantiles
from ..oracle import FourDVarResult, OracleAnalysis
from ..posterior import Posterior
from ..problems import Problem

NAME = "emulator_agreement"


def emulated_problem(problem: Problem, emulator) -> Problem:
    """``problem`` with its forward model replaced by ``emulator``.

    For the default emulator (one model step per call) this is exactly
    ``problem.with_forward(emulator)``. An emulator advancing s > 1 steps per call needs
    a window whose length and observation steps are multiples of s; they are then
    counted in emulator steps (the problem's config and hash are unchanged: it is the
    same window)."""
    if getattr(emulator, "problem_hash", problem.hash) != problem.hash:
        raise ValueError(f"the emulator emulates problem hash {emulator.problem_hash}, not {problem.hash} "
                         f"({problem.name!r})")
    swapped = problem.with_forward(emulator)
    s = int(getattr(emulator, "steps_per_call", 1))
    if s == 1:
        return swapped
    if problem.n_steps % s or any(t % s for t in problem.obs_steps):
        raise ValueError(
            f"an emulator of {s} model steps per call needs n_steps ({problem.n_steps}) and every observation "
            f"step {problem.obs_steps} to be multiples of {s}"
        )
    return dataclasses.replace(swapped, n_steps=problem.n_steps // s, obs_steps=tuple(t // s for t in problem.obs_steps))


def emulator_agreement(emulator, problem: Problem, y, mask, oracle_mean, oracle_std, *,
                       analysis: OracleAnalysis | None = None,
                       config: GateConfig | None = None) -> tuple[GateResult, Posterior, FourDVarResult]:
    """Run ``analysis`` (default ``OracleAnalysis()``: strong 4DVar + Laplace; pass the
    oracle's own) on the emulated problem for E held-out events ``y``, ``mask`` (E, T, *obs)
    and gate its posterior means against the physics oracle's ``oracle_mean``,
    ``oracle_std`` (E, *state).

    Returns ``(gate, posterior, result)``: the :class:`GateResult` named
    ``emulator_agreement`` (DESIGN's agreement rule; details add the emulator solves'
    convergence summary and the quantiles of σ_emu/σ_oracle), the emulator-based
    posteriors and the solver's per-event result.
    """
    analysis = analysis if analysis is not None else OracleAnalysis()
    config = config or GateConfig()
    mu = np.asarray(oracle_mean, dtype=np.float64)
    n = np.shape(y)[0]
    if mu.shape[0] != n or np.shape(oracle_std)[0] != n or np.shape(mask)[0] != n:
        raise ValueError(f"`y`, `mask`, `oracle_mean` and `oracle_std` must have the same number of events, got "
                         f"{n}, {np.shape(mask)[0]}, {mu.shape[0]} and {np.shape(oracle_std)[0]}")
    post, result = analysis.analyse(emulated_problem(problem, emulator), y, mask)
    gate = agreement_from_estimates(post.mean, mu, oracle_std, config)
    details = dict(gate.details)
    details["emulator_solver"] = result.summary()
    if post.std is not None:
        details["std_ratio_quantiles"] = summary_quantiles(np.asarray(post.std) / np.asarray(oracle_std))
    return dataclasses.replace(gate, name=NAME, details=details), post, result


def emulator_agreement_from_oracle(emulator, problem: Problem, oracle_dataset, *,
                                   analysis: OracleAnalysis | None = None,
                                   config: GateConfig | None = None) -> tuple[GateResult, Posterior, FourDVarResult]:
    """:func:`emulator_agreement` on the events of an ``oracle`` dataset
    (:func:`vardax_core.oracle.open_oracle`): its converged events, at most
    ``config.agreement_events`` of them, as ``run_gates`` selects them."""
    config = config or GateConfig()
    data = read_oracle(oracle_dataset, problem)
    sel = np.flatnonzero(data["converged"])
    if config.agreement_events:
        sel = sel[: config.agreement_events]
    if sel.size == 0:
        raise ValueError("the oracle dataset has no converged events to compare with")
    gate, post, result = emulator_agreement(emulator, problem, data["y"][sel], data["mask"][sel], data["mean"][sel],
                                            data["std"][sel], analysis=analysis, config=config)
    details = {**gate.details, "oracle_events": int(data["converged"].size),
               "oracle_unconverged_excluded": int((~data["converged"]).sum())}
    return dataclasses.replace(gate, details=details), post, result
