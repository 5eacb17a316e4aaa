"""Render ``benchmarks/RESULTS.md`` and its figures from the JSON records of one run.

Run: .venv/bin/python benchmarks/report.py RUN_DIR [--output benchmarks/RESULTS.md]
         [--figures DIR] [--list]

``RUN_DIR`` holds one ``<name>.json`` per benchmark script (written by the script's
``--json``; ``make bench`` runs them all through ``benchmarks/_runner.py``) and, from
the runner, ``run.json`` (the command and per-script wall times). The report has a header
describing the machine, a summary of the targets, then one section per benchmark: its
command, its tables (every number as the script measured and formatted it: the cells are
rendered by the same ``_common.cell_text`` as the script's printout), its targets as
measured, its figures, and the static reading in ``benchmarks/notes/<name>.md`` (prose
without measured numbers). Figures (matplotlib, Agg) go to ``--figures`` (default:
``figures/`` next to the output) and carry the record they were drawn from in their PNG
metadata (``Source``). ``--list`` prints the benchmark names and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import QUICK_LABEL, display_path, markdown_table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_BENCHMARKS = {"report.py"}  # scripts here that measure nothing; helpers start with "_"
ORDER = ["simulate", "oracle", "oracle_workers", "amortized", "heads", "gates", "gate_power", "reprocess", "emulator"]
TITLES = {
    "simulate": "Simulation pairs",
    "oracle": "4DVar oracle vs SciPy",
    "oracle_workers": "Oracle step: parallel chunk workers",
    "amortized": "Amortized heads vs the 4DVar oracle",
    "gates": "The three gates on lorenz96",
    "gate_power": "Gate size and power: the exact posterior and wrong ones",
    "heads": "The default lorenz96 head: accuracy against training pairs, gates over seeds",
    "reprocess": "Catalogue reprocessing",
    "emulator": "Emulator vs physics",
    "cycling": "Cycled DA: twins of published Lorenz-96 set-ups, and a head as the analysis step",
    "latency": "Single-event analysis latency (the real-time path)",
}


# ---------------------------------------------------------------- the run


def benchmark_names(directory: str = HERE) -> list[str]:
    """The benchmark scripts of ``directory`` (every ``*.py`` but helpers, ``_*.py``, and
    this report), in report order: ``ORDER`` first, then any others alphabetically."""
    names = sorted(f[:-3] for f in os.listdir(directory)
                   if f.endswith(".py") and not f.startswith("_") and f not in NOT_BENCHMARKS)
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def load_run(run_dir: str, names: list[str]) -> tuple[dict, dict]:
    """(``run.json`` or {}, {name: record}) of a run folder; a missing record is an error."""
    records, missing = {}, []
    for name in names:
        path = os.path.join(run_dir, f"{name}.json")
        if not os.path.exists(path):
            missing.append(path)
            continue
        with open(path) as f:
            records[name] = json.load(f)
        records[name]["_sha256"] = _sha256(path)
    if missing:
        raise FileNotFoundError("no record for: " + ", ".join(missing))
    index_path = os.path.join(run_dir, "run.json")
    index = {}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    return index, records


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- header


def _cores(affinity) -> str:
    """``[0, 1, 2, 5]`` → ``0-2, 5``."""
    if not affinity:
        return "unknown"
    spans, start, prev = [], affinity[0], affinity[0]
    for cur in affinity[1:]:
        if cur != prev + 1:
            spans.append((start, prev))
            start = cur
        prev = cur
    spans.append((start, prev))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def machine_table(records: dict) -> str:
    """The machine, from the records (all runs of one report are on one machine)."""
    m = next(iter(records.values()))["machine"]
    by_cores = {}
    for name, r in records.items():
        by_cores.setdefault(_cores(r["machine"]["affinity"]), []).append(name)
    affinity = "; ".join(f"{cores} ({', '.join(names)})" for cores, names in by_cores.items())
    cache = {r["machine"].get("compilation_cache") for r in records.values()}
    rows = [
        ["CPU", m["cpu_model"]],
        ["cores", f"os.cpu_count() = {m['cpu_count']}; CPU affinity of the benchmark processes: {affinity}"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["jax / jaxlib / equinox / numpy", f"{m['jax']} / {m['jaxlib']} / {m['equinox']} / {m['numpy']}"],
        ["backend", f"{m['backend']}, float64 {'on' if m['x64'] else 'off'}; persistent compilation cache "
                    + ("off (compile times are compilations)" if cache == {None}
                       else f"on: {sorted(map(str, cache))}")],
    ]
    return markdown_table(["", "this run"], rows)


def _date_range(records: dict, index: dict) -> str:
    start = index.get("started") or min(r["started"] for r in records.values())
    end = index.get("finished") or max(r["finished"] for r in records.values())
    return f"{start} to {end}"


def header(records: dict, index: dict, run_dir: str) -> str:
    """Title, the generated-file notice, the machine and how to reproduce the report."""
    quick = any(r["quick"] for r in records.values())
    make = index.get("command") or "make bench" + (" BENCH_QUICK=1" if quick else "")
    out = [
        "# Benchmark results",
        "",
        "<!-- Generated by `make bench` (benchmarks/report.py): do not edit by hand. -->",
        "**Generated by `make bench` from one run; do not edit by hand.** Every number below is the one "
        "the benchmark script measured (its JSON record, rendered as printed). The dated log of earlier, "
        "hand-written measurements is `benchmarks/HISTORY.md`.",
        "",
    ]
    if quick:
        out += [f"> **{QUICK_LABEL}.** This report comes from `--quick` runs (tiny sizes, so that the chain "
                "runs in a test): its numbers and its met/not-met verdicts say nothing about performance.", ""]
    out += [
        f"Run: {_date_range(records, index)} (UTC); records in `{display_path(run_dir)}`."
        + "".join(f" Resumed at {r['at']} after {r['after']!r}, re-running {', '.join(r['rerun'])} "
                  "(the other scripts' records are from before)." for r in index.get("resumed", [])),
        "",
        "## Machine",
        "",
        machine_table(records),
        "",
        "## Reproduce",
        "",
        "```",
        make,
        "```",
        "",
        "runs every script below with `--json <run folder>/<name>.json`"
        + (" and `--quick`" if quick else "") + ", then `benchmarks/report.py <run folder>`. "
        "One benchmark alone: the command in its section.",
        "",
    ]
    return "\n".join(out)


def targets_summary(records: dict) -> str:
    """Every target of every benchmark, as measured."""
    rows = []
    for name, rec in records.items():
        for t in rec["targets"]:
            rows.append([f"`{name}`", t["what"], t["measured"], t["goal"], "met" if t["met"] else "**not met**"])
    if not rows:
        return ""
    return "\n".join(["## Targets", "", markdown_table(["benchmark", "target", "measured", "goal", ""], rows), ""])


# ---------------------------------------------------------------- sections


def _notes(name: str, notes_dir: str) -> str:
    path = os.path.join(notes_dir, f"{name}.md")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read().strip()


def _run_line(rec: dict, index: dict) -> str:
    wall = next((s["seconds"] for s in index.get("scripts", []) if s["name"] == rec["name"]), None)
    text = (f"Run: {rec['started']} to {rec['finished']} (UTC), {rec['seconds']:.0f} s in the script"
            + (f", {wall:.0f} s with start-up" if wall is not None else "")
            + f"; load average {rec['load_average_start']:.1f} at the start, {rec['load_average_end']:.1f} at the end; "
            f"CPU affinity {_cores(rec['machine']['affinity'])}.")
    return text


def section(name: str, rec: dict, index: dict, figures: list[tuple[str, str]], notes_dir: str) -> str:
    """One benchmark: command, context, tables, targets, figures, reading."""
    title = TITLES.get(name, name)
    quick = f" — {QUICK_LABEL}" if rec["quick"] else ""
    out = [f"## {title} (`{rec['script']}`){quick}", "", "Command:", "", "```", rec["command"], "```", "",
           _run_line(rec, index), f"Record: `{name}.json` (sha256 {rec['_sha256'][:12]}).", ""]
    out += [f"- {line}" for line in rec["lines"]]
    if rec["lines"]:
        out.append("")
    for table in rec["tables"]:
        if table["title"]:
            out += [f"### {table['title']}", ""]
        out += [markdown_table(table["columns"], table["rows"]), ""]
    if rec["targets"]:
        out += ["### Targets, as measured", "",
                markdown_table(["target", "measured", "goal", ""],
                               [[t["what"], t["measured"], t["goal"], "met" if t["met"] else "**not met**"]
                                for t in rec["targets"]]), ""]
    else:
        out += ["No target is recorded for this benchmark.", ""]
    for caption, link in figures:
        out += [f"![{caption}]({link})", "", f"*{caption}*", ""]
    notes = _notes(name, notes_dir)
    if notes:
        out += ["### Reading", "", notes, ""]
    return "\n".join(out)


def render(records: dict, index: dict, run_dir: str, figures: dict, notes_dir: str) -> str:
    """The whole report (markdown)."""
    parts = [header(records, index, run_dir), targets_summary(records)]
    parts += [section(name, rec, index, figures.get(name, []), notes_dir) for name, rec in records.items()]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


# ---------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, source: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Source": source, "Software": "benchmarks/report.py"})
    _pyplot().close(fig)


def plot_batch_sweep(rec: dict, path: str, source: str) -> str | None:
    """Events/s of each head's point estimate against the batch size, the oracle's
    events/s and the 10^4x target as reference lines."""
    d = rec["data"].get("batch_sweep")
    if not d:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for head, rates in d["events_per_s"].items():
        ax.plot(d["batch_sizes"], rates, marker="o", label=f"{head} head, point estimate")
    oracle = d["oracle"]
    ax.axhline(oracle["events_per_s"], color="k", ls="--", label=f"4DVar oracle ({oracle['name']})")
    ax.axhline(1e4 * oracle["events_per_s"], color="grey", ls=":", label="target: 10⁴ × the oracle")
    ax.set(xscale="log", yscale="log", xlabel="batch size (events per call)", ylabel="events/s",
           title="Point estimate: events/s against the batch size" + (" (quick mode)" if rec["quick"] else ""))
    ax.set_xticks(d["batch_sizes"], [str(b) for b in d["batch_sizes"]])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, path, source)
    return "Point estimate events/s against the batch size, with the 4DVar oracle's events/s"


def plot_catalogue(rec: dict, path: str, source: str) -> str | None:
    """Reprocessing seconds, events/s and peak memory against the catalogue size."""
    d = rec["data"].get("catalogue")
    if not d or not d["events"]:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    n = d["events"]
    axes[0].plot(n, d["seconds"], marker="o")
    axes[0].set(yscale="log", ylabel="seconds (set-up + run)", title="time")
    axes[1].plot(n, d["events_per_s"], marker="o")
    axes[1].set(ylabel="events/s", title="rate")
    axes[1].set_ylim(0, 1.15 * max(d["events_per_s"]))
    axes[2].plot(n, d["peak_before_mb"], marker="o", label="before run()")
    axes[2].plot(n, d["peak_mb"], marker="s", label="at the end")
    axes[2].set(ylabel="peak RSS (MB)", title="peak memory")
    axes[2].set_ylim(0, 1.15 * max(d["peak_mb"] + d["peak_before_mb"]))
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set(xscale="log", xlabel="catalogue events")
        ax.set_xticks(n, [f"{e:,}" for e in n])
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Reprocessing cost against the catalogue size" + (" (quick mode)" if rec["quick"] else ""))
    _save(fig, path, source)
    return "Reprocessing time, events/s and peak memory against the catalogue size"


FIGURES = {  # benchmark → [(file name, plot function)]
    "amortized": [("amortized-events-per-s-vs-batch.png", plot_batch_sweep)],
    "reprocess": [("reprocess-cost-vs-catalogue.png", plot_catalogue)],
}


def draw_figures(records: dict, run_dir: str, figures_dir: str, output: str) -> dict:
    """Draw every figure; {name: [(caption, link relative to the output)]}."""
    os.makedirs(figures_dir, exist_ok=True)
    links = {}
    for name, plots in FIGURES.items():
        if name not in records:
            continue
        source = f"{display_path(os.path.join(run_dir, name + '.json'))} sha256:{records[name]['_sha256']}"
        for filename, plot in plots:
            path = os.path.join(figures_dir, filename)
            caption = plot(records[name], path, source)
            if caption:
                link = os.path.relpath(path, os.path.dirname(os.path.abspath(output)))
                links.setdefault(name, []).append((caption, link.replace(os.sep, "/")))
    return links


# ---------------------------------------------------------------- entry point


def write_report(run_dir: str, output: str, figures_dir: str | None = None,
                 notes_dir: str = os.path.join(HERE, "notes"), names: list[str] | None = None) -> str:
    """Render the report of ``run_dir`` into ``output`` (figures into ``figures_dir``,
    default ``figures/`` next to it); returns the markdown."""
    names = benchmark_names() if names is None else names
    index, records = load_run(run_dir, names)
    figures_dir = figures_dir or os.path.join(os.path.dirname(os.path.abspath(output)), "figures")
    links = draw_figures(records, run_dir, figures_dir, output)
    text = render(records, index, run_dir, links, notes_dir)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        f.write(text)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="folder of one run's JSON records")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--figures", help="folder for the figures (default: figures/ next to --output)")
    ap.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(benchmark_names()))
        return
    if not args.run_dir:
        ap.error("RUN_DIR is required")
    write_report(args.run_dir, args.output, args.figures)
    print(f"report: {display_path(args.output)} from {display_path(args.run_dir)}")


if __name__ == "__main__":
    main()
