"""Simulation pairs: generation speed and Zarr write throughput on lorenz96.

Run: .venv/bin/python benchmarks/simulate.py [--events N] [--ref-events M] [--write-events W]
         [--chunk C] [--quick] [--json PATH]
Prints pairs/s of the batched jitted simulator next to a per-event NumPy reference, and
the end-to-end `write_pairs` throughput in pairs/s and MB/s.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import numpy as np

import vardax_core  # noqa: F401
from _common import Num, Record, best_of, machine, parse_args, parser, ratio
from vardax_core.data import write_pairs
from vardax_core.problems import get_problem


def numpy_reference(problem, n, seed=0):
    """What a researcher would write: one event at a time, NumPy RK4."""
    rng = np.random.default_rng(seed)
    F, dt = problem.forward.forcing, problem.forward.dt
    B = np.asarray(problem.prior.cov.as_matrix())
    L = np.linalg.cholesky(B)
    xb = np.asarray(problem.prior.mean)

    def f(x):
        return (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + F

    out = []
    for _ in range(n):
        x = xb + L @ rng.normal(size=xb.size)
        x0, ys = x.copy(), []
        for k in range(1, problem.n_steps + 1):
            k1 = f(x); k2 = f(x + dt / 2 * k1); k3 = f(x + dt / 2 * k2); k4 = f(x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            if k in problem.obs_steps:
                ys.append(x[::2] + rng.normal(size=20))
        out.append((x0, np.stack(ys)))
    return out


QUICK = {"events": 512, "ref_events": 16, "write_events": 2048, "chunk": 512}


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--events", type=int, default=10_000, help="events simulated by the batched simulator")
    ap.add_argument("--ref-events", type=int, default=500, help="events of the NumPy loop (scaled to --events)")
    ap.add_argument("--write-events", type=int, default=100_000, help="events written by write_pairs")
    ap.add_argument("--chunk", type=int, default=4096)
    args = parse_args(ap)
    rec = Record("simulate", args)

    p = get_problem("lorenz96")
    n = args.events
    key = jax.random.key(0)
    p.simulate(key, n)[1].block_until_ready()  # compile
    t_jax = best_of(lambda: p.simulate(key, n)[1].block_until_ready())
    n_ref = args.ref_events
    t_ref = best_of(lambda: numpy_reference(p, n_ref), repeat=1) * n / n_ref

    tmp = tempfile.mkdtemp()
    try:
        n_w, chunk = args.write_events, args.chunk
        path = os.path.join(tmp, "pairs.zarr")
        write_pairs(p, os.path.join(tmp, "warm.zarr"), chunk, 0, chunk_size=chunk)  # compile
        t = time.perf_counter()
        write_pairs(p, path, n_w, 0, chunk_size=chunk)
        t_write = time.perf_counter() - t
        mb = n_w * (40 * 8 + 5 * 20 * 8 + 5 * 20) / 1e6
    finally:
        shutil.rmtree(tmp)

    print(f"machine: {machine()}")
    rec.table("simulate", "lorenz96 default: batched jitted simulator vs a NumPy per-event loop "
              f"(the loop timed on {n_ref} events, scaled)",
              ["what (lorenz96 default)", "events", "vardax_core", "NumPy per-event loop", "ratio"],
              [["simulate, pairs/s", str(n), Num(n / t_jax, ",.0f"), Num(n / t_ref, ",.0f"), ratio(t_ref / t_jax)],
               [f"write_pairs to Zarr, chunk {chunk}, pairs/s", str(n_w), Num(n_w / t_write, ",.0f"), None, None],
               [f"write_pairs to Zarr, chunk {chunk}, MB/s ({mb:.0f} MB)", str(n_w), Num(mb / t_write, ",.0f", " MB/s"),
                None, None]])
    rec.save()


if __name__ == "__main__":
    main()
