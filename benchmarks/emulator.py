"""Neural emulator against the physics: forward cost per window and 4DVar events/s.

Run: .venv/bin/python benchmarks/emulator.py [--emulator PATH] [--save PATH] [--events N]
     [--batch B] [--epochs E]

On lorenz96 (default configuration) it
- trains the default emulator (``build_emulator`` + ``fit_emulator``, seed 0; ``--epochs``
  overrides ``max_epochs``) or loads one (``--emulator``), and reports its two gates;
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

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401  (float64)
from _common import best_of, machine
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emulator", help="a saved emulator (skips training)")
    ap.add_argument("--save", help="where to save the trained emulator")
    ap.add_argument("--events", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=None, help="override max_epochs of the default training")
    args = ap.parse_args()

    p = get_problem("lorenz96")
    t = time.perf_counter()
    if args.emulator:
        emu = load_emulator(args.emulator, p)
        how = f"loaded from {args.emulator}"
    else:
        config = {} if args.epochs is None else {"max_epochs": args.epochs}
        emu, history = fit_emulator(build_emulator(p, None, jax.random.key(0)), p, config=config, seed=0,
                                    progress=False)
        how = f"trained: {history['n_train']} pairs, {len(history['epochs'])} epochs, {time.perf_counter() - t:.0f} s"
        if args.save:
            save_emulator(args.save, emu)
    gates = emulator_gates(emu, p, jax.random.key(1))

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
    print(f"Emulator: {arch} ({how})")
    print("Gates: " + ", ".join(f"{r.name} {'pass' if r.passed else 'FAIL'} ({r.statistic:.4f} < {r.threshold:g})"
                                for r in gates.values())
          + f"; emulator-4DVar agreement on {args.events} events: {agree.statistic:.3f} (>= {agree.threshold:g})")
    print()
    print(f"| lorenz96, window of {p.n_steps} steps | physics (RK4) | emulator | emulator / physics |")
    print("|---|---|---|---|")

    def row(what, a, b, unit, scale):
        print(f"| {what} | {a * scale:.3g} {unit} | {b * scale:.3g} {unit} | {b / a:.1f}x |")

    ph, em = fwd["physics"], fwd["emulator"]
    row("forward, one window, single event", ph["single"], em["single"], "µs", 1e6)
    row(f"forward, one window per event, batch of {args.batch}", ph["batched"], em["batched"], "µs", 1e6)
    row(f"4DVar cost + gradient per event, batch of {args.batch}", ph["cost_grad"], em["cost_grad"], "µs", 1e6)
    rp, re = rates["physics"], rates["emulator"]
    print(f"| 4DVar + Laplace (strong), events/s, {args.events} events | {rp['events_per_s']:.3g} | "
          f"{re['events_per_s']:.3g} | {rp['events_per_s'] / re['events_per_s']:.1f}x slower |")
    row("4DVar + Laplace, compilation", rp["compile_s"], re["compile_s"], "s", 1)
    print(f"| 4DVar iterations (mean), converged fraction | {rp['iterations']:.1f}, {rp['converged']:.2f} | "
          f"{re['iterations']:.1f}, {re['converged']:.2f} | |")


if __name__ == "__main__":
    main()
