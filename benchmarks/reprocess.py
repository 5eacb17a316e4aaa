"""Catalogue reprocessing: events/s of ``AnalysesWriter`` against the bare jitted head on
the same events, and peak memory as the catalogue grows.

Run: .venv/bin/python benchmarks/reprocess.py [--events N] [--chunk C] [--sizes 10000,100000,...]
         [--covariance diag|full] [--quick] [--json PATH]

On lorenz96 (default configuration), with an *untrained* Gaussian head (the L96 encoder and
head of tests/amortized/conftest.py, ``covariance="diag"`` by default; speed does not
depend on the weights) it
- writes a synthetic catalogue of N events (``write_catalogue``, chunks of C) and times
  reprocessing it into an ``analyses`` store — ``AnalysesWriter(...)`` (validation and the
  catalogue hash) plus ``.run()`` (mean, std, 5/50/95% quantiles, Gaussian) — after a
  compiling run on a one-chunk catalogue, best of 3 (a fresh output store each time);
- times the bare jitted head on the same events, already in memory, chunk by chunk with
  the same chunk shape: the point estimate ``posterior(y, mask)``, and the compute kernel
  of the writer (``posterior.posterior`` → mean, std, quantiles, jitted), each blocked,
  best of 3 after a compiling call; the ratio is reprocessing's events/s over each
  (target >= 0.5 of the bare head);
- times each stage alone — the catalogue hash, reading the catalogue, the kernel,
  encoding + writing the analyses — in wall and process CPU time (all threads): their
  CPU time over the core count bounds reprocessing from below however well the stages
  overlap, which gives the best ratio this machine allows;
- for each size in ``--sizes``: writes a catalogue in one fresh subprocess, then
  reprocesses it in another and reports that process's peak resident memory before
  ``run()`` (imports, model, compile on one chunk, writer set-up) and at the end. The peak
  is ``VmHWM`` from /proc/self/status: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is
  also printed, but on Linux a child's ``ru_maxrss`` includes the RSS of the parent it
  was forked from (the maximum is kept across ``exec``), so it reads this script's own
  size, not the child's. Memory should not grow with the catalogue (bounded by one chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401  (float64)
from _common import Num, Record, best_of, machine, parse_args, parser, wall_and_cpu
from vardax_core.amortized import build_posterior
from vardax_core.data import AnalysesWriter, open_catalogue, write_catalogue
from vardax_core.data._analyses import _analyse
from vardax_core.problems import get_problem

ENCODER = {"type": "mlp", "features": 128, "width": 256}
QUANTILES = (0.05, 0.5, 0.95)


def model(covariance: str):
    p = get_problem("lorenz96")
    cfg = {"encoder": ENCODER, "head": {"type": "gaussian", "covariance": covariance, "width": 128, "depth": 1}}
    return p, build_posterior(p, cfg, jax.random.key(0))


def writer(post, p, cat, out):
    return AnalysesWriter(post, p, cat, out, provenance={"model_name": "bench", "model_version": "1"},
                          quantiles=QUANTILES)


def peak_mb() -> float:
    """Peak RSS of this process image (MB): ``VmHWM`` of /proc/self/status, the high-water
    mark of the memory map created at ``exec``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (MB). On Linux it also counts the image this
    process was exec'ed from — a subprocess inherits its parent's RSS at the fork — so it
    overstates a child's own peak by up to the parent's size; printed for reference."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args):
    """Subprocess modes: ``catalogue`` writes one; ``reprocess`` reprocesses it and prints
    its timings and peak RSS as JSON."""
    p, post = model(args.covariance)
    if args.child == "catalogue":
        t = time.perf_counter()
        write_catalogue(p, args.path, n_events=args.events, seed=1, chunk_size=args.chunk)
        print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": peak_mb(), "maxrss_mb": maxrss_mb()}))
        return
    warm_cat = args.path + ".warm"
    write_catalogue(p, warm_cat, n_events=args.chunk, seed=2, chunk_size=args.chunk)
    writer(post, p, warm_cat, warm_cat + ".analyses").run()  # compile at the chunk shape
    t0 = time.perf_counter()
    w = writer(post, p, args.path, args.path + ".analyses")
    t1 = time.perf_counter()
    before = peak_mb()
    w.run()
    t2 = time.perf_counter()
    print(json.dumps({"setup_seconds": t1 - t0, "run_seconds": t2 - t1, "peak_before_mb": before, "peak_mb": peak_mb(),
                      "maxrss_mb": maxrss_mb()}))


def run_child(mode, path, n, args) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--path", path, "--events", str(n), "--chunk", str(args.chunk),
           "--covariance", args.covariance]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


TARGET_RATIO = 0.5  # reprocessing events/s over the bare head's kernel
MEMORY_GROWTH = 1.25  # peak RSS, largest catalogue over smallest (tests/data/test_analyses_memory.py)
QUICK = {"events": 2048, "chunk": 512, "sizes": "2048"}


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--events", type=int, default=50_000, help="events for the rate comparison")
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--sizes", default="10000,100000", help="catalogue sizes for peak memory (comma-separated)")
    ap.add_argument("--covariance", default="diag", choices=["diag", "full"])
    ap.add_argument("--child", choices=["catalogue", "reprocess"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = parse_args(ap)
    if args.child:
        return child(args)
    rec = Record("reprocess", args)

    load0 = os.getloadavg()[0]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    p, post = model(args.covariance)
    C, N = args.chunk, args.events
    tmp = tempfile.mkdtemp()
    try:
        # ---- reprocessing vs the bare head, same events
        cat = os.path.join(tmp, "catalogue.zarr")
        t = time.perf_counter()
        write_catalogue(p, cat, n_events=N, seed=1, chunk_size=C)
        t_cat = time.perf_counter() - t
        warm = os.path.join(tmp, "warm.zarr")
        write_catalogue(p, warm, n_events=C, seed=2, chunk_size=C)
        writer(post, p, warm, os.path.join(tmp, "warm-analyses.zarr")).run()  # compile
        def reprocess_once():
            out = os.path.join(tmp, "analyses.zarr")
            shutil.rmtree(out, ignore_errors=True)  # a fresh store each time: all the work
            t0 = time.perf_counter()
            w = writer(post, p, cat, out)
            t1 = time.perf_counter()
            w.run()
            return t1 - t0, time.perf_counter() - t1

        # best of 3, like the bare head below (set-up + run of the fastest of three runs)
        t_setup, t_run = min((reprocess_once() for _ in range(3)), key=sum)

        ds = open_catalogue(cat, p)
        y, mask = np.asarray(ds["y"].values), np.asarray(ds["mask"].values)
        pad = -len(y) % C  # the writer pads the last chunk (unobserved events); so does this
        y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
        mask = np.concatenate([mask, np.zeros((pad, *mask.shape[1:]), bool)])
        yc = [jnp.asarray(y[i : i + C]) for i in range(0, len(y), C)]
        mc = [jnp.asarray(mask[i : i + C]) for i in range(0, len(y), C)]
        levels, key = jnp.asarray(QUANTILES), jax.random.key(0)

        def bare_point():
            jax.block_until_ready([post(a, b) for a, b in zip(yc, mc)])

        def bare_analyse():
            jax.block_until_ready([_analyse(post, a, b, key, levels, 0)[:3] for a, b in zip(yc, mc)])

        bare_point(), bare_analyse()  # compile
        t_point, t_kernel = best_of(bare_point), best_of(bare_analyse)
        stages = cpu_stages(post, p, cat, tmp, bare_analyse)

        # ---- peak memory, fresh subprocesses per size
        mem = []
        for n in sizes:
            path = os.path.join(tmp, f"cat-{n}.zarr")
            c = run_child("catalogue", path, n, args)
            r = run_child("reprocess", path, n, args)
            mem.append((n, c, r))
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(path + ".analyses", ignore_errors=True)
    finally:
        shutil.rmtree(tmp)

    report(rec, args, load0, N, C, t_cat, t_setup, t_run, t_point, t_kernel, mem, stages)
    rec.save()


def cpu_stages(post, p, cat, tmp, kernel) -> list[tuple[str, float, float]]:
    """Each stage of reprocessing alone, on the same catalogue: (stage, wall, CPU)."""
    from vardax_core.data import dataset_hash

    cat_hash = dataset_hash(cat)
    count = iter(range(1_000_000))

    def fresh():
        return AnalysesWriter(post, p, cat, os.path.join(tmp, f"stage-{next(count)}.zarr"),
                              provenance={"model_name": "bench", "model_version": "1"}, quantiles=QUANTILES,
                              catalogue_hash=cat_hash)

    w = fresh()
    chunks = range(w.store.n_chunks)
    reads = [w._read(c) for c in chunks]
    outs = [w._dispatch(r) for r in reads]
    jax.block_until_ready([o[2] for o in outs])

    def write_all():
        ww = fresh()
        for o in outs:
            ww._write(o)

    return [
        ("catalogue hash (`dataset_hash`)", *wall_and_cpu(lambda: dataset_hash(cat))),
        ("read + decode every catalogue chunk", *wall_and_cpu(lambda: [w._read(c) for c in chunks])),
        ("the head's kernel (mean, std, quantiles)", *wall_and_cpu(kernel)),
        ("encode + write every analyses chunk (fresh store)", *wall_and_cpu(write_all)),
    ]


def report(rec, args, load0, N, C, t_cat, t_setup, t_run, t_point, t_kernel, mem, stages):
    """Print and record the tables, the targets and the per-size data."""
    print(f"machine: {machine()}; load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    rec.line(f"lorenz96 default, untrained Gaussian head (covariance={args.covariance!r}, MLP encoder 128/256), "
             f"chunks of {C}, quantiles {list(QUANTILES)} (Gaussian); catalogue of {N} events written in {t_cat:.1f} s")
    r_rep = N / (t_setup + t_run)
    r_run = N / t_run
    rows = [
        ("reprocessing: AnalysesWriter set-up (validate, catalogue hash) + run()", t_setup + t_run, r_rep),
        ("reprocessing: run() only", t_run, r_run),
        ("bare jitted head, point estimate `posterior(y, mask)`, in memory", t_point, N / t_point),
        ("bare jitted head, mean + std + quantiles (the writer's kernel), in memory", t_kernel, N / t_kernel),
    ]
    rec.table("rates", f"Reprocessing against the bare head on the same {N} events (set-up {t_setup:.2f} s)",
              ["what", "events", "seconds", "events/s", "reprocessing (set-up + run) / this", "run() only / this"],
              [[what, str(N), Num(secs, ".2f"), Num(rate, ",.0f"), Num(r_rep / rate, ".2f"), Num(r_run / rate, ".2f")]
               for what, secs, rate in rows])
    cores = os.cpu_count() or 1
    cpu = sum(c for _, _, c in stages)
    rec.table("stages", f"Where the CPU goes: each stage alone on the same {N} events (best of 3; "
              "CPU = process CPU time, all threads)",
              ["stage", "wall, s", "CPU, s", "cores busy"],
              [[what, Num(w, ".3f"), Num(c, ".3f"), Num(c / w, ".1f")] for what, w, c in stages]
              + [["all stages", Num(sum(w for _, w, _ in stages), ".3f"), Num(cpu, ".3f"), "—"]])
    rec.line(f"With every stage overlapped perfectly on {cores} cores, reprocessing takes at least "
             f"{cpu / cores:.3f} s (their CPU time / {cores}): against the bare kernel's {t_kernel:.3f} s above, a ceiling "
             f"of {t_kernel / max(t_kernel, cpu / cores):.2f} on the ratio on this machine.")
    rec.table("memory", "Cost against the catalogue size (fresh subprocesses; peak RSS is the child's own VmHWM)",
              ["catalogue events", "write_catalogue, s", "write_catalogue, peak RSS", "reprocess set-up, s",
               "reprocess run(), s", "events/s", "peak RSS before run()", "peak RSS at the end",
               "ru_maxrss at the end (incl. parent's)"],
              [[Num(n, ",d"), Num(c["seconds"], ".1f"), Num(c["peak_mb"], ",.0f", " MB"),
                Num(r["setup_seconds"], ".1f"), Num(r["run_seconds"], ".1f"),
                Num(n / (r["setup_seconds"] + r["run_seconds"]), ",.0f"), Num(r["peak_before_mb"], ",.0f", " MB"),
                Num(r["peak_mb"], ",.0f", " MB"), Num(r["maxrss_mb"], ",.0f", " MB")]
               for n, c, r in mem])
    rec.data("catalogue", {
        "events": [n for n, _, _ in mem],
        "seconds": [r["setup_seconds"] + r["run_seconds"] for _, _, r in mem],
        "events_per_s": [n / (r["setup_seconds"] + r["run_seconds"]) for n, _, r in mem],
        "peak_before_mb": [r["peak_before_mb"] for _, _, r in mem],
        "peak_mb": [r["peak_mb"] for _, _, r in mem],
    })
    rec.target("reprocessing (set-up + run) events/s over the bare head's kernel", Num(r_rep * t_kernel / N, ".2f"),
               f">= {TARGET_RATIO:g}", r_rep * t_kernel / N >= TARGET_RATIO)
    if len(mem) >= 2:
        lo, hi = min(mem, key=lambda m: m[0]), max(mem, key=lambda m: m[0])
        growth = hi[2]["peak_mb"] / lo[2]["peak_mb"]
        rec.target(f"peak RSS at the end, {hi[0]:,} events over {lo[0]:,} events", Num(growth, ".2f", "x"),
                   f"<= {MEMORY_GROWTH:g}x", growth <= MEMORY_GROWTH)


if __name__ == "__main__":
    main()
