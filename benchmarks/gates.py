"""Wall time of the three gates on lorenz96 (N=40) for the Gaussian and flow heads.

Run: .venv/bin/python benchmarks/gates.py [--runs 1000] [--draws 99] [--events 200]
         [--probes 8] [--power-steps 20] [--heads gaussian,flow] [--modes full,fast]
         [--quick] [--json PATH]

- SBC with N = 1000 runs × L = 99 posterior draws (L + 1 = 100 rank values, so the 20
  default bins each hold 5 of them; L = 100 would make L + 1 = 101 prime), every state
  component, the observation misfit and log q: 42 statistics.
- posterior agreement and adjoint calibration on 200 events.

The heads are freshly initialised (untrained) by ``vardax_core.amortized.build_posterior``
with the default encoder: timing depends on the architecture, not on the weights (the
gates themselves fail, as they should for untrained heads). The adjoint gate runs with
its default statistic (dense Jacobians: the head's by forward-mode differentiation, the
reference's formed once per event) against the oracle's exact-Hessian implicit-function
Jacobian (``OracleReference``) at x* = the truth — the pipeline's reference when the
oracle dataset stores no MCMC one; with a stored MCMC Jacobian the reference costs
nothing. ``--probes`` / ``--power-steps`` apply to ``adjoint_statistic="operator-norm"``. Agreement compares with
the truth and the prior std (timing only). "first call" includes compilation; "warm" is a
second call with a new key (its process CPU time too). ``--modes full,fast`` also
measures ``fast_compile=True`` (XLA optimisation level 0; the default is full).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import numpy as np

import vardax_core  # noqa: F401
from _common import Num, Record, machine, parse_args, parser
from vardax_core.gates import (
    GateConfig,
    OracleReference,
    PosteriorReference,
    adjoint_calibration,
    posterior_agreement,
    sbc,
)
from vardax_core.problems import get_problem


def _timed(fn, key_seed: int):
    """(first call wall, warm call wall, warm call CPU) in seconds; CPU time is robust to
    other processes competing for the cores."""
    t = time.perf_counter()
    fn(jax.random.key(key_seed))
    first = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    fn(jax.random.key(key_seed + 1))
    return first, time.perf_counter() - t, time.process_time() - c


def _reference(problem, other_head):
    try:
        from vardax_core.oracle import sensitivity_jvp, sensitivity_vjp  # noqa: F401
    except ImportError:
        return PosteriorReference(other_head, problem.state_shape), "the other head's ∂x̂/∂y (oracle not available)"
    return OracleReference(problem), "oracle ∂x*/∂y (exact-Hessian IFT) at x* = truth"


TARGET_SBC_S = 60.0  # SBC (first call, compilation included) on 2 cores
TARGET_RUN_S = 180.0  # the whole gate run of one head (three first calls), issue 16
QUICK = {"runs": 100, "draws": 19, "events": 2, "probes": 1, "power_steps": 1, "heads": "gaussian", "modes": "fast"}


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=99)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--probes", type=int, default=GateConfig.n_probes, help="adjoint calibration probes per event")
    ap.add_argument("--power-steps", type=int, default=GateConfig.power_steps, help="adjoint power iterations")
    ap.add_argument("--heads", default="gaussian,flow")
    ap.add_argument("--modes", default="full")
    args = parse_args(ap)
    rec = Record("gates", args)

    from vardax_core.amortized import build_posterior

    problem = get_problem("lorenz96")
    heads = {h: build_posterior(problem, {"head": {"type": h}}, jax.random.key(0)) for h in args.heads.split(",")}
    x, y, mask = problem.simulate(jax.random.key(7), args.events)
    prior_std = np.broadcast_to(np.sqrt(np.asarray(problem.prior.cov.variance())), x.shape)

    rows = []
    for mode in args.modes.split(","):
        config = GateConfig(sbc_runs=args.runs, sbc_draws=args.draws, n_probes=args.probes,
                            power_steps=args.power_steps, fast_compile=(mode == "fast"))
        for name, head in heads.items():
            other = heads["gaussian" if name != "gaussian" else next(iter(h for h in heads if h != name), name)]
            ref, ref_text = _reference(problem, other)
            rows.append((mode, name, "sbc", f"SBC, {args.runs} runs × {args.draws} draws",
                         *_timed(lambda k: sbc(head, problem, k, config), 0)))
            rows.append((mode, name, "agreement", f"posterior agreement, {args.events} events",
                         *_timed(lambda k: posterior_agreement(head, y, mask, x, prior_std, config), 10)))
            rows.append((mode, name, "adjoint", f"adjoint calibration ({config.adjoint_statistic}), {args.events} "
                                                f"events; reference: {ref_text}",
                         *_timed(lambda k: adjoint_calibration(head, y, mask, ref, k, config, aux=x), 20)))
            print(*rows[-3:], sep="\n", file=sys.stderr, flush=True)

    print(f"machine: {machine()}; load average at the end: {os.getloadavg()[0]:.1f}")
    rec.line("heads: freshly initialised (untrained) `build_posterior(lorenz96, {'head': {'type': …}})`, "
             "default encoder")
    rec.table("gates", "Wall time of the three gates (first call: compilation + run; warm: a second call, new key)",
              ["XLA mode", "head", "gate", "first call (compile + run), s", "warm call, s", "warm call CPU, s"],
              [[mode, name, what, Num(first, ".1f"), Num(warm, ".2f"), Num(cpu, ".2f")]
               for mode, name, _, what, first, warm, cpu in rows])
    for mode, name, gate, what, first, _, _ in rows:
        if gate == "sbc":
            rec.target(f"{name} head: {what}, first call (compilation included), XLA mode {mode}",
                       Num(first, ".1f", " s"), f"<= {TARGET_SBC_S:g} s", first <= TARGET_SBC_S)
    for mode in args.modes.split(","):
        for name in heads:
            total = sum(first for m, n, _, _, first, _, _ in rows if m == mode and n == name)
            rec.target(f"{name} head: the three gates, first calls summed ({args.events} events, SBC {args.runs} × "
                       f"{args.draws}), XLA mode {mode}", Num(total, ".1f", " s"), f"<= {TARGET_RUN_S:g} s",
                       total <= TARGET_RUN_S)
    rec.save()


if __name__ == "__main__":
    main()
