"""Amortized posteriors: per-event latency and events/s of each head against the 4DVar
oracle on the same lorenz96 events, and training throughput.

Run: .venv/bin/python benchmarks/amortized.py [--events N] [--sample-events M]
         [--oracle-events K] [--samples S] [--pairs P] [--epochs E] [--heads gaussian-full,...]
         [--batch-sizes 1,8,...] [--oracles strong,incremental] [--quick] [--json PATH]

On lorenz96 (default configuration) it
- builds each head with the architecture of tests/amortized/conftest.py (L96_MODELS; the
  Gaussian head both with ``covariance="diag"`` as there and ``"full"``) and trains it
  briefly with ``fit`` on a P-pair store written by ``write_pairs`` (E epochs, the tests'
  training config otherwise). Training throughput is the per-epoch ``pairs_per_second``
  ``fit`` reports (training pairs / epoch wall time, validation included) over the
  epochs after the first; the first epoch compiles, and its excess over the warm epochs
  is reported as the compile time. Accuracy is not the point here: the weights are only
  those few epochs' (speed does not depend on them);
- times the point estimate ``posterior(y, mask)`` on N events and ``posterior.sample(y,
  mask, key, S)`` on M events, each compiled by a first identical call (the compile time
  is reported separately), best of 3, blocked with ``block_until_ready``; and the
  per-event latency, the median of 5 warm single-event calls;
- solves the first K of the same events with ``StrongFourDVar`` and
  ``IncrementalFourDVar`` (gtol 1e-6, as benchmarks/oracle.py), one batched jitted call
  each after an identical compiling call, and divides each head's events/s by the faster
  oracle's (the target for the point estimate is >= 10^4x);
- sweeps the batch size of the point estimate (``--batch-sizes``): events/s of one call
  on B events, calls back to back (each blocked) until at least ``--sweep-events``
  events, best of 3 after a compiling call; the oracle's events/s is the reference.
Nothing is pinned: the machine is shared, so the load average at the start and the end is
printed with the table.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401  (float64)
from _common import Num, Record, best_of, machine, median_call_seconds, parse_args, parser, ratio
from vardax_core.amortized import build_posterior, fit
from vardax_core.data import write_pairs
from vardax_core.oracle import IncrementalFourDVar, StrongFourDVar
from vardax_core.problems import get_problem

ENCODER = {"type": "mlp", "features": 128, "width": 256}
PRECOND = {"precond_covariance": "diag", "precond_width": 128, "precond_depth": 1}
MODELS = {  # tests/amortized/conftest.py L96_MODELS, plus the full-covariance Gaussian head
    "gaussian-full": {"encoder": ENCODER, "head": {"type": "gaussian", "covariance": "full", "width": 128, "depth": 1}},
    "gaussian-diag": {"encoder": ENCODER, "head": {"type": "gaussian", "covariance": "diag", "width": 128, "depth": 1}},
    "flow": {"encoder": ENCODER, "head": {"type": "flow", **PRECOND, "flow_layers": 4, "nn_width": 64, "nn_depth": 1}},
    "score": {"encoder": ENCODER, "head": {"type": "score", **PRECOND, "width": 128, "depth": 2, "sample_steps": 50}},
}
TRAIN = {"learning_rate": 3e-3, "batch_size": 128}  # conftest L96_TRAIN, epochs set below


def timed_first(fn):
    """(seconds of the first call, result); ``fn`` must block."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def oracle_rate(solver, problem, y, mask):
    """(events/s, compile seconds, converged fraction) of one batched solve of all events."""
    run = lambda: jax.block_until_ready(solver.solve(problem, y, mask))  # noqa: E731
    first, _ = timed_first(run)
    t, res = timed_first(run)
    return len(y) / t, first - t, float(np.mean(np.asarray(res.converged)))


def sweep(post, y, mask, sizes, min_events: int) -> list[float]:
    """Events/s of the point estimate at each batch size: one call on B events, repeated
    back to back (each blocked) to cover at least ``min_events``, best of 3, compiled first."""
    rates = []
    for b in sizes:
        yb, mb = y[:b], mask[:b]
        calls = max(1, -(-min_events // b))
        post(yb, mb).block_until_ready()  # compile this shape

        def run():
            for _ in range(calls):
                post(yb, mb).block_until_ready()

        rates.append(calls * b / best_of(run))
    return rates


ORACLES = {
    "strong": ("StrongFourDVar (L-BFGS)", StrongFourDVar),
    "incremental": ("IncrementalFourDVar (GN + CG)", IncrementalFourDVar),
}
TARGET = 1e4  # point estimate events/s over the oracle's
QUICK = {"events": 8, "sample_events": 1, "samples": 8, "oracle_events": 1, "pairs": 256, "heads": "gaussian-diag",
         "batch_sizes": "1,8", "sweep_events": 16, "oracles": "strong"}


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--events", type=int, default=4096, help="events for the point estimate")
    ap.add_argument("--sample-events", type=int, default=32, help="events for the sampling rows")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--oracle-events", type=int, default=256, help="the first K events, solved by the oracle")
    ap.add_argument("--pairs", type=int, default=5_000, help="size of the training pairs store")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs (the first compiles)")
    ap.add_argument("--heads", default=",".join(MODELS))
    ap.add_argument("--batch-sizes", default="1,8,64,512,4096", help="batch sizes of the point-estimate sweep")
    ap.add_argument("--sweep-events", type=int, default=1024, help="events timed per batch size of the sweep")
    ap.add_argument("--oracles", default=",".join(ORACLES), help="oracle solvers timed (the faster is the reference)")
    args = parse_args(ap)
    heads = args.heads.split(",")
    sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch compiles)")
    if max(sizes) > args.events:
        ap.error(f"--batch-sizes: the largest ({max(sizes)}) exceeds --events ({args.events})")
    rec = Record("amortized", args)

    load0 = os.getloadavg()[0]
    p = get_problem("lorenz96")
    n = max(args.events, args.sample_events, args.oracle_events)
    _, y_all, m_all = p.simulate(jax.random.key(2026), n)
    y_all, m_all = jax.block_until_ready((jnp.asarray(y_all), jnp.asarray(m_all)))
    y, mask = y_all[: args.events], m_all[: args.events]
    ys, ms = y_all[: args.sample_events], m_all[: args.sample_events]
    key = jax.random.key(1)

    # ---- oracle on the first K events
    yo, mo = np.asarray(y_all[: args.oracle_events]), np.asarray(m_all[: args.oracle_events])
    oracles = {ORACLES[o][0]: ORACLES[o][1](gtol=1e-6) for o in args.oracles.split(",")}
    orc = {name: oracle_rate(s, p, yo, mo) for name, s in oracles.items()}
    best_oracle = max(orc, key=lambda k: orc[k][0])
    r_oracle = orc[best_oracle][0]

    tmp = tempfile.mkdtemp()
    rows, train_rows, sweeps = [], [], {}
    try:
        path = os.path.join(tmp, "pairs.zarr")
        t_pairs, _ = timed_first(lambda: write_pairs(p, path, args.pairs, 0, chunk_size=2500))
        for name in heads:
            post = build_posterior(p, MODELS[name], jax.random.key(0))
            cfg = {**TRAIN, "max_epochs": args.epochs, "patience": args.epochs}
            t_fit, (post, hist) = timed_first(lambda: fit(post, path, problem=p, config=cfg, seed=0, progress=False))
            ep = hist["epochs"]
            warm_s = float(np.median([e["epoch_seconds"] for e in ep[1:]]))
            warm_pps = float(np.median([e["pairs_per_second"] for e in ep[1:]]))
            train_rows.append((name, hist["n_train"], len(ep), ep[0]["epoch_seconds"] - warm_s, warm_s, warm_pps,
                               t_fit))

            # point estimate: N events; latency of single events
            c_pt, _ = timed_first(lambda: post(y, mask).block_until_ready())
            t_pt = best_of(lambda: post(y, mask).block_until_ready())
            # single events cut beforehand: an eager slice inside the timed call costs tens of µs
            one = [(y[i : i + 1], mask[i : i + 1]) for i in range(5)]
            post(*one[0]).block_until_ready()  # compile the single-event shape
            lat_pt = median_call_seconds(lambda i: post(*one[i]).block_until_ready(), 5, len(one))
            rows.append((name, "point estimate", args.events, c_pt, lat_pt, args.events / t_pt))
            sweeps[name] = sweep(post, y, mask, sizes, args.sweep_events)

            # S samples per event: M events
            S = args.samples
            c_s, _ = timed_first(lambda: post.sample(ys, ms, key, S).block_until_ready())
            t_s = best_of(lambda: post.sample(ys, ms, key, S).block_until_ready())
            one = [(ys[i : i + 1], ms[i : i + 1], jax.random.fold_in(key, i)) for i in range(min(5, len(ys)))]
            post.sample(*one[0], S).block_until_ready()
            lat_s = median_call_seconds(lambda i: post.sample(*one[i], S).block_until_ready(), 5, len(one))
            rows.append((name, f"{S} samples", args.sample_events, c_s, lat_s, args.sample_events / t_s))
    finally:
        shutil.rmtree(tmp)

    report(rec, args, load0, orc, best_oracle, rows, sizes, sweeps, t_pairs, train_rows)
    rec.save()


def report(rec, args, load0, orc, best_oracle, rows, sizes, sweeps, t_pairs, train_rows):
    """Print and record the tables, the target and the sweep's data."""
    r_oracle = orc[best_oracle][0]
    print(f"machine: {machine()}; not pinned; load average {load0:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end")
    rec.line(f"lorenz96 default (n=40, 10 steps, 5 × 20 observations); heads trained {args.epochs} epochs on "
             f"{args.pairs} pairs (speed only); ratio = events/s over the faster oracle's ({best_oracle}, "
             f"on the first {args.oracle_events} of the same events)")
    table = [[f"{name}, gtol 1e-6 ({conv:.0%} converged)", "analysis", str(args.oracle_events),
              Num(comp, ".1f", " s"), None, Num(rate, ",.1f"), Num(rate / r_oracle, ".2f", "x")]
             for name, (rate, comp, conv) in orc.items()]
    table += [[f"{name} head", what, str(ne), Num(comp, ".1f", " s"), Num(lat * 1e3, ".2f", " ms"), Num(rate, ",.0f"),
               ratio(rate / r_oracle)] for name, what, ne, comp, lat, rate in rows]
    rec.table("heads", "Amortized heads against the 4DVar oracle on the same events",
              ["method", "output", "events", "compile", "per-event latency (1 event, warm)", "events/s (batched)",
               "ratio vs oracle"], table)
    rec.table("batch_sweep", "Point estimate: events/s against the batch size (calls back to back, each blocked)",
              ["head", *[f"batch {b}" for b in sizes], f"ratio vs oracle at batch {sizes[-1]}"],
              [[name, *[Num(r, ",.0f") for r in rates], ratio(rates[-1] / r_oracle)] for name, rates in sweeps.items()])
    rec.data("batch_sweep", {"batch_sizes": sizes, "events_per_s": sweeps,
                             "oracle": {"name": best_oracle, "events_per_s": r_oracle, "events": args.oracle_events}})
    rec.table("training", f"Training: `fit` on a `write_pairs` store of {args.pairs} pairs (written in "
              f"{t_pairs:.1f} s), batch {TRAIN['batch_size']}, validation 10%",
              ["head", "training pairs", "epochs", "compile (epoch 1 minus a warm epoch)", "warm epoch",
               "pairs/s (warm epochs, median)", "fit wall"],
              [[name, str(ntr), str(ne), Num(comp, ".1f", " s"), Num(warm_s, ".2f", " s"), Num(pps, ",.0f"),
                Num(t_fit, ".1f", " s")] for name, ntr, ne, comp, warm_s, pps, t_fit in train_rows])
    for name, what, _, _, _, rate in rows:
        if what == "point estimate":
            rec.target(f"{name} head, point estimate: events/s over the oracle's", ratio(rate / r_oracle),
                       f">= {TARGET:,.0f}x", rate / r_oracle >= TARGET)


if __name__ == "__main__":
    main()
