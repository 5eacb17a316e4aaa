"""Real-time latency of one analysis: the public call, the RealtimeAnalysis path and the
bare network arithmetic of each head, on single lorenz96 events.

Run: .venv/bin/python benchmarks/latency.py [--calls N] [--heads gaussian,flow,score,analysis-step]
         [--dispatch async|sync|both] [--quick] [--json PATH]

On lorenz96 (default configuration: state 40, observations 5 × 20) each head with the
default architecture (``build_posterior(problem, {"head": {"type": ...}})``), and the
cycle's analysis step (``analysis-step``: the head of configs/lorenz96-cycling.yaml on
lorenz96_cycling, observations 2 × 40), untrained (the speed does not depend on the
weights), analyses single events, 16 simulated ones cycled, every array already on the
device. Three ways, each call blocked with
``block_until_ready``:

(a) public: ``model(y[None], mask[None])`` — input checks (one host sync), the model
    partitioned into arrays, the jitted batched program;
(b) realtime: ``rt(y, mask)`` with ``rt = model.realtime()`` — one program compiled ahead
    of time with the weights captured, nothing checked per call;
(c) bare: the head's ``point`` alone on the features ``model.features(y, mask)``
    computed beforehand, compiled ahead of time the same way — the head's arithmetic
    plus one dispatch (no encoder, no standardisation).

Each is timed over N warm calls (after 20 warm-up calls), the three interleaved in ten
blocks so that a change of load affects them alike; median and 90th percentile are
reported, with (b)/(c) and the target (b) ≤ 0.2 ms. Every row is measured twice: with
JAX's default asynchronous CPU dispatch (a call hands the program to another thread and
the caller waits for it) and, in a child process, with ``jax_cpu_enable_async_dispatch``
off (the program runs on the calling thread; a setting of the whole process, fixed at
JAX's first computation). Nothing is pinned: the machine is shared, so the load average
at the start and the end is printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import numpy as np

import vardax_core  # noqa: F401  (float64)
from _common import Num, Record, machine, parse_args, parser, ratio
from cycling import HEAD as CYCLE_HEAD
from vardax_core.amortized import build_posterior
from vardax_core.problems import get_problem

TARGET_MS = 0.2
EVENTS, WARMUP, BLOCKS = 16, 20, 10
QUICK = {"calls": 50, "heads": "gaussian", "dispatch": "async"}


def paths(model, ys, ms):
    """{name: (one call of event i, compile seconds)} for the three paths."""
    yb, mb = [y[None] for y in ys], [m[None] for m in ms]
    feats = [jax.block_until_ready(model.features(a, b)) for a, b in zip(yb, mb)]
    t = time.perf_counter()
    rt = model.realtime()
    t_rt = time.perf_counter() - t
    t = time.perf_counter()
    bare = jax.jit(lambda c: jax.vmap(model.head.point)(c)).lower(feats[0]).compile()
    t_bare = time.perf_counter() - t
    t = time.perf_counter()
    model(yb[0], mb[0]).block_until_ready()
    t_pub = time.perf_counter() - t
    return {
        "public": (lambda i: model(yb[i], mb[i]).block_until_ready(), t_pub),
        "realtime": (lambda i: rt(ys[i], ms[i]).block_until_ready(), t_rt),
        "bare": (lambda i: bare(feats[i]).block_until_ready(), t_bare),
    }


def time_calls(calls: dict, n: int) -> dict:
    """{name: per-call seconds (n,)}: ``WARMUP`` calls each, then n calls each in
    ``BLOCKS`` interleaved blocks."""
    out = {k: [] for k in calls}
    for k, f in calls.items():
        for i in range(WARMUP):
            f(i % EVENTS)
    per_block = -(-n // BLOCKS)
    for b in range(BLOCKS):
        for k, f in calls.items():
            for j in range(b * per_block, min(n, (b + 1) * per_block)):
                t = time.perf_counter()
                f(j % EVENTS)
                out[k].append(time.perf_counter() - t)
    return {k: np.asarray(v) for k, v in out.items()}


#: head name → (problem, model config): the default architecture of each head type on
#: lorenz96, and the analysis step of the cycle (configs/lorenz96-cycling.yaml's head on the
#: background-conditioned problem; moment form: its point estimate is the trunk's mean)
HEADS = {
    "gaussian": ("lorenz96", {"head": {"type": "gaussian"}}),
    "flow": ("lorenz96", {"head": {"type": "flow"}}),
    "score": ("lorenz96", {"head": {"type": "score"}}),
    "analysis-step": ("lorenz96_cycling", CYCLE_HEAD),
}


def measure(args, heads: list[str]) -> dict:
    """{head: medians, 90th percentiles (ms) and compile seconds} in this process."""
    stats = {}
    for head in heads:
        if head not in HEADS:
            raise SystemExit(f"--heads: unknown head {head!r}; known: {', '.join(HEADS)}")
        problem, config = HEADS[head]
        p = get_problem(problem)
        _, y, mask = p.simulate(jax.random.key(2026), EVENTS)
        ys = [jax.device_put(np.asarray(y[i])) for i in range(EVENTS)]
        ms = [jax.device_put(np.asarray(mask[i])) for i in range(EVENTS)]
        model = build_posterior(p, config, jax.random.key(0))
        fns = paths(model, ys, ms)
        times = time_calls({k: f for k, (f, _) in fns.items()}, args.calls)
        stats[head] = {"median_ms": {k: float(np.median(v)) * 1e3 for k, v in times.items()},
                       "p90_ms": {k: float(np.percentile(v, 90)) * 1e3 for k, v in times.items()},
                       "realtime_compile_s": fns["realtime"][1]}
    return stats


def sync_child(args) -> dict:
    """The same measurement in a child process with synchronous CPU dispatch (a setting
    of the process, fixed when JAX first computes)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sync.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--dispatch", "sync", "--calls", str(args.calls),
               "--heads", args.heads, "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"the sync-dispatch child failed:\n{proc.stdout}\n{proc.stderr}")
        with open(out) as f:
            return json.load(f)["data"]["latency"]["sync"]


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--calls", type=int, default=1000, help="warm calls timed per path and head")
    ap.add_argument("--heads", default=",".join(HEADS), help=f"comma-separated, of: {', '.join(HEADS)}")
    ap.add_argument("--dispatch", choices=["async", "sync", "both"], default="both",
                    help="JAX's CPU dispatch: async (the default), sync (jax_cpu_enable_async_dispatch off), "
                         "both (sync measured in a child process)")
    args = parse_args(ap)
    if args.calls < 1:
        ap.error("--calls must be >= 1")
    if args.dispatch == "sync":  # before the first computation (the record's machine description)
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    rec = Record("latency", args)
    load0 = os.getloadavg()[0]
    heads = args.heads.split(",")
    own = "sync" if args.dispatch == "sync" else "async"
    stats = {own: measure(args, heads)}
    if args.dispatch == "both":
        stats["sync"] = sync_child(args)

    ms_cell = lambda v: Num(v, ".3f", " ms")  # noqa: E731
    rows = []
    for mode, per_head in stats.items():
        for head, s in per_head.items():
            med, p90 = s["median_ms"], s["p90_ms"]
            rows.append([head, mode, str(args.calls), ms_cell(med["public"]), ms_cell(p90["public"]),
                         ms_cell(med["realtime"]), ms_cell(p90["realtime"]), ms_cell(med["bare"]), ms_cell(p90["bare"]),
                         ratio(med["realtime"] / med["bare"]), ratio(med["public"] / med["realtime"]),
                         "yes" if med["realtime"] <= TARGET_MS else "no", Num(s["realtime_compile_s"], ".1f", " s")])
    print(f"machine: {machine()}; not pinned; load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    rec.line(f"lorenz96 default (state 40, 5 × 20 observations), default architecture per head, and the cycle's "
             f"analysis step (lorenz96_cycling, 2 × 40 observations, conv1d encoder, Gaussian in moment form), untrained; "
             f"single events, every call blocked; {args.calls} warm calls per path after {WARMUP}, interleaved "
             f"in {BLOCKS} blocks; (a) public model(y[None], mask[None]), (b) model.realtime()(y, mask), "
             f"(c) the head's point alone on precomputed features (compiled ahead of time). CPU dispatch: async is "
             f"JAX's default; sync is jax_cpu_enable_async_dispatch=False (process-wide, set before JAX's first "
             f"computation), which runs a call on the calling thread instead of handing it to another")
    rec.table("latency", "Single-event latency: public call, RealtimeAnalysis, bare head arithmetic",
              ["head", "CPU dispatch", "calls", "(a) public median", "(a) p90", "(b) realtime median", "(b) p90",
               "(c) bare median", "(c) p90", "(b)/(c)", "(a)/(b)", "(b) <= 0.2 ms", "realtime compile"], rows)
    rec.data("latency", stats)
    for mode, per_head in stats.items():
        for head, s in per_head.items():
            rec.target(f"{head} head, {mode} dispatch: RealtimeAnalysis point estimate, median latency of one event",
                       Num(s["median_ms"]["realtime"], ".3f", " ms"), f"<= {TARGET_MS} ms",
                       s["median_ms"]["realtime"] <= TARGET_MS)
    rec.save()


if __name__ == "__main__":
    main()
