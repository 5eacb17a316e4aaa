"""Simulation pairs: generation speed and Zarr write throughput on lorenz96.

Run: .venv/bin/python benchmarks/simulate.py
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
from _common import best_of, machine
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


def main():
    p = get_problem("lorenz96")
    n = 10_000
    key = jax.random.key(0)
    p.simulate(key, n)[1].block_until_ready()  # compile
    t_jax = best_of(lambda: p.simulate(key, n)[1].block_until_ready())
    n_ref = 500
    t_ref = best_of(lambda: numpy_reference(p, n_ref), repeat=1) * n / n_ref

    tmp = tempfile.mkdtemp()
    try:
        n_w, chunk = 100_000, 4096
        path = os.path.join(tmp, "pairs.zarr")
        write_pairs(p, os.path.join(tmp, "warm.zarr"), chunk, 0, chunk_size=chunk)  # compile
        t = time.perf_counter()
        write_pairs(p, path, n_w, 0, chunk_size=chunk)
        t_write = time.perf_counter() - t
        mb = n_w * (40 * 8 + 5 * 20 * 8 + 5 * 20) / 1e6
    finally:
        shutil.rmtree(tmp)

    print(f"machine: {machine()}")
    print("| what (lorenz96 default) | vardax_core | NumPy per-event loop | ratio |")
    print("|---|---|---|---|")
    print(f"| simulate, pairs/s ({n} events) | {n / t_jax:,.0f} | {n / t_ref:,.0f} | {t_ref / t_jax:,.0f}x |")
    print(f"| write_pairs to Zarr, {n_w} events, chunk {chunk} | {n_w / t_write:,.0f} pairs/s, {mb / t_write:,.0f} MB/s ({mb:.0f} MB) | | |")


if __name__ == "__main__":
    main()
