"""Run every benchmark script into one run folder, then render the report (``make bench``).

Run: .venv/bin/python benchmarks/_runner.py [--quick] [--out DIR] [--report PATH]
         [--figures DIR] [--resume RUN_DIR]

Each script of ``report.benchmark_names()`` runs in its own process with
``--json <out>/<name>.json`` (and ``--quick``), its output shown and kept in
``<out>/<name>.log``; the first failure stops the run with a message naming the script
and its log, and no report is written. ``<out>/run.json`` records the commands, the
per-script wall times and the status as the run goes. Then ``report.write_report``
renders the report from that folder only.

Defaults: ``--out`` is ``$VARDAX_HOME/bench/<UTC time>`` (``-quick`` appended in quick
mode); ``--report`` is ``benchmarks/RESULTS.md``, or ``<out>/RESULTS.md`` in quick mode
so that a quick run never replaces the real report. In full mode the persistent JAX
compilation cache is off for the scripts (``JAX_COMPILATION_CACHE_DIR`` removed from
their environment): the compile times they report are compilations, not cache loads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import PROJECT_DIR, display_path  # noqa: E402
from report import benchmark_names, write_report  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Arguments beyond a script's defaults that the issues' targets need (full mode only):
# reprocessing's peak memory at 10^4, 10^5 and 10^6 events.
FULL_ARGS = {"reprocess": ["--sizes", "10000,100000,1000000"]}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def default_out(quick: bool) -> str:
    """``$VARDAX_HOME/bench/<UTC time>[-quick]`` (``.vardax`` in the project by default)."""
    home = os.environ.get("VARDAX_HOME") or os.path.join(PROJECT_DIR, ".vardax")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join(home, "bench", stamp + ("-quick" if quick else ""))


def resolve_paths(quick: bool, out: str | None, report: str | None) -> tuple[str, str]:
    """(run folder, report path), absolute: a quick run's report stays in its run folder
    unless a path is given, so that it never replaces ``benchmarks/RESULTS.md``."""
    out = os.path.abspath(out or default_out(quick))
    report = report or (os.path.join(out, "RESULTS.md") if quick else os.path.join(HERE, "RESULTS.md"))
    return out, os.path.abspath(report)


def script_command(name: str, out: str, quick: bool) -> list[str]:
    """The command line of one benchmark script in this run."""
    extra = ["--quick"] if quick else FULL_ARGS.get(name, [])
    return [sys.executable, os.path.join(HERE, f"{name}.py"), *extra, "--json", os.path.join(out, f"{name}.json")]


def script_env(quick: bool, out: str) -> dict:
    """The scripts' environment: this one, without the persistent compilation cache in
    full mode (compile times must be compilations). A quick run uses the caller's cache,
    or one in the run folder, and caches every program however fast it compiled: the
    scripts (and reprocess's subprocesses) compile many of the same programs — building a
    head alone dispatches dozens of small ones — and at quick sizes compiling is most of
    the time."""
    env = dict(os.environ)
    if not quick:
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
    else:
        if not env.get("JAX_COMPILATION_CACHE_DIR"):
            env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(out, "jax-cache")
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_script(cmd: list[str], log_path: str, env: dict) -> tuple[int, float]:
    """Run ``cmd`` from the project root, echoing its output and keeping it in
    ``log_path``; (exit status, wall seconds)."""
    t = time.perf_counter()
    with open(log_path, "w") as log, subprocess.Popen(cmd, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        status = proc.wait()
    return status, time.perf_counter() - t


def _write_index(out: str, index: dict) -> None:
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(index, f, indent=1)


def _failure(status: int, record: str) -> str | None:
    """Why a script's run counts as failed, or None."""
    if status != 0:
        return f"exit status {status}"
    if not os.path.exists(record):
        return f"exit status 0 but no record {record}"
    return None


def run(out: str, report: str, figures: str | None, quick: bool, names: list[str] | None = None,
        resume: bool = False) -> int:
    """Run the scripts, then the report; 0 on success, 1 at the first failure. With
    ``resume``, ``out`` is the folder of an earlier run that stopped at a failure: the
    scripts that completed there keep their records, the others run now, and the index
    records when the run resumed and which scripts it re-ran."""
    names = benchmark_names() if names is None else names
    os.makedirs(out, exist_ok=True)
    index = {"command": "make bench" + (" BENCH_QUICK=1" if quick else ""), "runner": " ".join(sys.argv),
             "quick": quick, "started": _now(), "status": "running", "scripts": []}
    done: set[str] = set()
    if resume:
        with open(os.path.join(out, "run.json")) as f:
            index = json.load(f)
        if index.get("quick") != quick:
            raise SystemExit(f"--resume: {out} was a {'quick' if index.get('quick') else 'full'} run")
        done = {s["name"] for s in index["scripts"]
                if s["returncode"] == 0 and os.path.exists(os.path.join(out, f"{s['name']}.json"))}
        index.setdefault("resumed", []).append({"at": _now(), "after": index.get("status"),
                                                "rerun": [n for n in names if n not in done]})
        index["status"] = "running"
        index["scripts"] = [s for s in index["scripts"] if s["name"] in done]
    env = script_env(quick, out)
    for name in names:
        if name in done:
            print(f"== benchmarks/{name}.py: kept from the earlier part of this run", flush=True)
            continue
        cmd, record = script_command(name, out, quick), os.path.join(out, f"{name}.json")
        if os.path.exists(record):  # a record left by an earlier run in this folder is not this run's
            os.remove(record)
        print(f"== benchmarks/{name}.py: {' '.join(cmd[2:])}", flush=True)
        status, seconds = run_script(cmd, os.path.join(out, f"{name}.log"), env)
        index["scripts"].append({"name": name, "command": cmd, "returncode": status, "seconds": round(seconds, 1)})
        failure = _failure(status, record)
        if failure:
            index.update(status=f"failed: {name}", finished=_now())
            _write_index(out, index)
            print(f"\nmake bench: benchmarks/{name}.py FAILED ({failure}, after {seconds:.0f} s); its output is in "
                  f"{os.path.join(out, name + '.log')}. Stopped: no report written.", file=sys.stderr, flush=True)
            return 1
        print(f"== benchmarks/{name}.py: done in {seconds:.0f} s", flush=True)
    index.update(status="done", finished=_now())
    _write_index(out, index)
    write_report(out, report, figures, names=names)
    print(f"make bench: report {display_path(report)} from {display_path(out)}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every script with --quick (numbers not representative)")
    ap.add_argument("--out", help="run folder (default $VARDAX_HOME/bench/<UTC time>)")
    ap.add_argument("--report", help="report path (default benchmarks/RESULTS.md; <out>/RESULTS.md with --quick)")
    ap.add_argument("--figures", help="figure folder (default figures/ next to the report)")
    ap.add_argument("--resume", metavar="RUN_DIR",
                    help="finish a run that stopped at a failure: keep its completed records, run the rest")
    args = ap.parse_args(argv)
    out, report = resolve_paths(args.quick, args.resume or args.out, args.report)
    return run(out, report, args.figures, args.quick, resume=bool(args.resume))


if __name__ == "__main__":
    sys.exit(main())
