"""The oracle step's chunk parallelism: events/s with ``oracle.workers: 2`` over ``workers: 1``.

Run: .venv/bin/python benchmarks/oracle_workers.py [--config configs/lorenz96.yaml]
         [--events 1000] [--workers 1,2] [--quick] [--json PATH]

What ``oracle-solve`` does with the default config, without Prefect: the held-out pairs
written to a Zarr store, then an ``OracleStoreWriter`` with the config's solver, chunk
size and Laplace posterior, its chunks processed by a thread pool of ``workers`` threads
(the flow's ``ThreadPoolTaskRunner(max_workers=oracle.workers)``), each run into a fresh
store. One untimed run compiles first. Solves in two threads overlap since jaxlib 0.11.1
(before, a lock serialised them: batched LAPACK kernels in two threads deadlocked).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

import vardax_core  # noqa: F401
from _common import PROJECT_DIR, Num, Record, machine, parse_args, parser, ratio
from vardax_core.data import dataset_hash, write_pairs
from vardax_core.oracle import OracleStoreWriter

QUICK = {"events": 8, "chunk_size": 4}
TARGET = 1.0  # two workers must not be slower than one; on 2 cores up to 2x


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--config", default=os.path.join(PROJECT_DIR, "configs", "lorenz96.yaml"))
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--chunk-size", type=int, default=None, help="default: the config's oracle.chunk_size")
    ap.add_argument("--workers", default="1,2")
    args = parse_args(ap)
    rec = Record("oracle_workers", args)

    from flows.config import load_config
    from flows.oracle import build_solver

    config = load_config(args.config)
    problem = config.problem.build()
    solver = build_solver(config)
    chunk = args.chunk_size or config.oracle.chunk_size
    workers = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        pairs = write_pairs(problem, os.path.join(tmp, "heldout.zarr"), args.events, seed=1, chunk_size=chunk)
        pairs_hash = dataset_hash(pairs)

        def run(n_workers: int, name: str) -> tuple[float, float, int]:
            writer = OracleStoreWriter(problem, pairs, os.path.join(tmp, name), solver=solver, chunk_size=chunk,
                                       pairs_hash=pairs_hash)
            t, c = time.perf_counter(), time.process_time()
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                list(pool.map(writer.process_chunk, writer.pending_chunks()))
            return time.perf_counter() - t, time.process_time() - c, writer.n_chunks

        run(1, "compile.zarr")
        rows, rates = [], {}
        for w in workers:
            wall, cpu, n_chunks = run(w, f"workers-{w}.zarr")
            rates[w] = args.events / wall
            rows.append([str(w), Num(args.events, ",d"), Num(n_chunks, ",d"), Num(wall, ".1f", " s"),
                         Num(cpu / wall, ".2f"), Num(rates[w], ",.1f")])
            print(rows[-1], file=sys.stderr, flush=True)
        same = [dataset_hash(os.path.join(tmp, f"workers-{w}.zarr")) for w in workers]
        identical = len(set(same)) == 1

    base = rates[workers[0]]
    for row, w in zip(rows, workers):
        row.append(ratio(rates[w] / base))
    print(f"machine: {machine()}")
    rec.line(f"config `{os.path.relpath(args.config, PROJECT_DIR)}`: {problem.name}, solver "
             f"{type(solver).__name__}, chunks of {chunk} events; the stores of every run are "
             f"{'identical (same content hash)' if identical else 'NOT identical'}")
    rec.table("workers", f"oracle-solve's chunks on a thread pool: events/s by number of workers "
                         f"(ratio over {workers[0]} worker)",
              ["workers", "events", "chunks", "wall", "CPU / wall", "events/s", "ratio"], rows)
    if 2 in rates and 1 in rates:
        r = rates[2] / rates[1]
        rec.target("oracle-solve, workers: 2 over workers: 1, events/s", ratio(r), f"> {TARGET:g}x", r > TARGET)
    if not identical:
        raise SystemExit("the stores written with different numbers of workers differ")
    rec.save()


if __name__ == "__main__":
    main()
