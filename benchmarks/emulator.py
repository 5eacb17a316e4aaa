"""Neural emulator against the physics: forward cost per window and 4DVar events/s.

Run: .venv/bin/python benchmarks/emulator.py [--emulator PATH] [--save PATH] [--events N]
     [--batch B] [--epochs E] [--trajectories T] [--forward-states F] [--jacobian-states J]
     [--quick] [--json PATH]

On lorenz96 (default configuration) it
- trains the default emulator (``build_emulator`` + ``fit_emulator``, seed 0; ``--epochs``
  overrides ``max_epochs``, ``--trajectories`` ``n_trajectories``) or loads one
  (``--emulator``), and reports its two gates (on ``--forward-states`` and
  ``--jacobian-states`` held-out states, the gates' defaults unless given);
- times one window (``n_steps`` model steps, ``problem.trajectory``) for a single event
  and per event in a vmapped batch of B, and the batched cost + gradient of the 4DVar
  cost (one forward and one adjoint sweep), physics against emulator, jitted and compiled
  beforehand (best of several calls);
- runs the same ``OracleAnalysis(StrongFourDVar())`` (4DVar + Laplace) on N events
  with the physics and with the emulator (``emulated_problem``): events/s after
  compilation, the compilation time, the agreement gate against the physics oracle;
and prints a markdown table with the ratios (emulator / physics time).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401  (float64)
from _common import Num, Record, best_of, machine, parse_args, parser
from vardax_core.emulator import (
    build_emulator,
    emulated_problem,
    emulator_agreement,
    emulator_gates,
    fit_emulator,
    load_emulator,
    save_emulator,
)
from vardax_core.oracle import OracleAnalysis, StrongFourDVar
from vardax_core.oracle._control import EventCost
from vardax_core.problems import get_problem


@eqx.filter_jit
def _windows(problem, x0):
    return jax.vmap(problem.trajectory)(x0)


@eqx.filter_jit
def _cost_and_grad(problem, v, y, mask):
    return jax.vmap(lambda vv, yy, mm: jax.value_and_grad(EventCost(problem, yy, mm).cost)(vv))(v, y, mask)


def _time(fn, repeat: int) -> float:
    jax.block_until_ready(fn())  # compile
    return best_of(lambda: jax.block_until_ready(fn()), repeat)


def forward_costs(problems: dict, x0, y, mask, batch: int) -> dict:
    out = {}
    v = jnp.zeros_like(x0[:batch])
    for name, p in problems.items():
        single = _time(lambda: _windows(p, x0[:1]), 20)
        batched = _time(lambda: _windows(p, x0[:batch]), 5) / batch
        adjoint = _time(lambda: _cost_and_grad(p, v, y[:batch], mask[:batch]), 5) / batch
        out[name] = {"single": single, "batched": batched, "cost_grad": adjoint}
    return out


def oracle_rates(problems: dict, y, mask) -> dict:
    analysis = OracleAnalysis(StrongFourDVar())
    out = {}
    for name, p in problems.items():
        t = time.perf_counter()
        jax.block_until_ready(analysis.analyse(p, y[:1], mask[:1]))  # compile (batch of 1) ...
        first = time.perf_counter() - t
        t = time.perf_counter()
        post, res = analysis.analyse(p, y, mask)  # ... and the batch shape
        jax.block_until_ready(post.mean)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        post, res = analysis.analyse(p, y, mask)
        jax.block_until_ready(post.mean)
        warm = time.perf_counter() - t
        out[name] = {"events_per_s": len(y) / warm, "compile_s": first + cold - warm, "posterior": post,
                     "iterations": float(np.mean(np.asarray(res.iterations))),
                     "converged": float(np.mean(np.asarray(res.converged)))}
    return out


# One event, batch of one: each jitted computation compiles for one shape only.
QUICK = {"events": 1, "batch": 1, "epochs": 1, "trajectories": 32, "forward_states": 64, "jacobian_states": 8}


def train(args, p):
    """The emulator (trained or loaded) and how it was obtained."""
    t = time.perf_counter()
    if args.emulator:
        return load_emulator(args.emulator, p), f"loaded from {args.emulator}"
    config = {} if args.epochs is None else {"max_epochs": args.epochs}
    if args.trajectories is not None:
        config["n_trajectories"] = args.trajectories
    emu, history = fit_emulator(build_emulator(p, None, jax.random.key(0)), p, config=config, seed=0, progress=False)
    if args.save:
        save_emulator(args.save, emu)
    return emu, f"trained: {history['n_train']} pairs, {len(history['epochs'])} epochs, {time.perf_counter() - t:.0f} s"


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--emulator", help="a saved emulator (skips training)")
    ap.add_argument("--save", help="where to save the trained emulator")
    ap.add_argument("--events", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=None, help="override max_epochs of the default training")
    ap.add_argument("--trajectories", type=int, default=None, help="override n_trajectories of the default training")
    ap.add_argument("--forward-states", type=int, default=None, help="override the forward gate's held-out states")
    ap.add_argument("--jacobian-states", type=int, default=None, help="override the Jacobian gate's held-out states")
    args = parse_args(ap)
    rec = Record("emulator", args)

    p = get_problem("lorenz96")
    emu, how = train(args, p)
    gate_config = {k: v for k, v in (("forward_states", args.forward_states),
                                     ("jacobian_states", args.jacobian_states)) if v is not None}
    gates = emulator_gates(emu, p, jax.random.key(1), gate_config or None)

    n = max(args.events, args.batch)
    _, y, mask = p.simulate(jax.random.key(2026), n)
    x0 = p.prior.sample(jax.random.key(7), (n,))
    problems = {"physics": p, "emulator": emulated_problem(p, emu)}
    fwd = forward_costs(problems, x0, y, mask, args.batch)
    rates = oracle_rates(problems, y[: args.events], mask[: args.events])
    post = rates["physics"].pop("posterior")
    rates["emulator"].pop("posterior")
    agree, _, _ = emulator_agreement(emu, p, y[: args.events], mask[: args.events], post.mean, post.std)

    print(f"Machine: {machine()}")
    arch = {k: emu.config[k] for k in ("channels", "depth", "kernel", "product", "skip", "steps_per_call", "dtype")}
    rec.line(f"Emulator: {arch} ({how})")
    ph, em = fwd["physics"], fwd["emulator"]
    rp, re = rates["physics"], rates["emulator"]

    def row(what, a, b, unit, scale, fmt=".3g"):
        return [what, Num(a * scale, fmt, f" {unit}"), Num(b * scale, fmt, f" {unit}"), Num(b / a, ".1f", "x")]

    rec.table("costs", "Physics against the emulator (emulator / physics: > 1 means the emulator is slower)",
              [f"lorenz96, window of {p.n_steps} steps", "physics (RK4)", "emulator", "emulator / physics"],
              [row("forward, one window, single event", ph["single"], em["single"], "µs", 1e6),
               row(f"forward, one window per event, batch of {args.batch}", ph["batched"], em["batched"], "µs", 1e6),
               row(f"4DVar cost + gradient per event, batch of {args.batch}", ph["cost_grad"], em["cost_grad"], "µs",
                   1e6),
               [f"4DVar + Laplace (strong), events/s, {args.events} events", Num(rp["events_per_s"], ".3g"),
                Num(re["events_per_s"], ".3g"), Num(rp["events_per_s"] / re["events_per_s"], ".1f", "x slower")],
               row("4DVar + Laplace, compilation", rp["compile_s"], re["compile_s"], "s", 1),
               ["4DVar iterations (mean)", Num(rp["iterations"], ".1f"), Num(re["iterations"], ".1f"), None],
               ["4DVar converged fraction", Num(rp["converged"], ".2f"), Num(re["converged"], ".2f"), None]])
    for r in gates.values():
        rec.target(f"emulator gate {r.name}", Num(float(r.statistic), ".4f"), f"< {r.threshold:g}", bool(r.passed))
    rec.target(f"emulator-4DVar agreement with the physics oracle, {args.events} events",
               Num(float(agree.statistic), ".3f"), f">= {agree.threshold:g}", bool(agree.passed))
    rec.save()


if __name__ == "__main__":
    main()
