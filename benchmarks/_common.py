"""Shared helpers for benchmark scripts: timing, machine description, quick mode and the
JSON record of what a script measured.

Every benchmark script builds its argument parser with :func:`parser`, which adds
``--quick`` (tiny sizes: the chain runs in a test, numbers not representative) and
``--json PATH`` (write the record there), and reports through a :class:`Record`: its
``line`` and ``table`` print as before *and* keep what they print, numbers included,
so that ``benchmarks/report.py`` renders exactly the measured values.

A table cell is a string, ``None`` (empty) or a :class:`Num` — a measured value with the
format it is displayed in. :func:`cell_text` is the one formatter used by the scripts'
printout and by the report.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

SCHEMA = 1
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_LABEL = "quick mode: not representative"


# ---------------------------------------------------------------- timing


def wall_and_cpu(fn, repeat: int = 3) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of ``repeat`` calls of ``fn``; ``fn``
    must block. Process CPU time counts every thread (JAX's, Zarr's codecs, hashing)."""
    runs = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    return min(runs)


def median_call_seconds(fn, n: int, events: int = 1, warmup: int = 0) -> float:
    """Median wall time of ``n`` calls of ``fn(i)`` (i = call index modulo ``events``, e.g.
    a single event each), after ``warmup`` untimed calls; ``fn`` must block."""
    for i in range(warmup):
        fn(i % events)
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i % events)
        times.append(time.perf_counter() - t)
    return float(statistics.median(times))


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` (seconds); ``fn`` must block."""
    return wall_and_cpu(fn, repeat)[0]


# ---------------------------------------------------------------- cells


@dataclass(frozen=True)
class Num:
    """A measured number and how it is displayed: ``format(value, fmt) + unit``."""

    value: float
    fmt: str = ",.3g"
    unit: str = ""

    def text(self) -> str:
        return format(self.value, self.fmt) + self.unit

    def to_json(self) -> dict:
        return {"value": self.value, "fmt": self.fmt, "unit": self.unit}


def ratio(r: float) -> Num:
    """A ratio shown as ``1,234x`` from 100 up, ``19.5x`` from 10, ``1.23x`` below (three
    significant digits up to 100, so that a ratio just under a target such as 20x does
    not display as the target)."""
    return Num(float(r), ",.0f" if abs(r) >= 100 else ".1f" if abs(r) >= 10 else ".2f", "x")


def _plain(value):
    """A JSON-friendly scalar (NumPy and JAX scalars become Python ones)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return value


def cell_json(cell):
    """A table cell as stored in the record: a string, None or ``Num.to_json()``."""
    if isinstance(cell, Num):
        return {**cell.to_json(), "value": _plain(cell.value)}
    if cell is None or isinstance(cell, str):
        return cell
    raise TypeError(f"a table cell is a str, None or Num, not {type(cell).__name__}: {cell!r}")


def cell_text(cell) -> str:
    """The displayed text of a cell, stored (dict) or live (:class:`Num`)."""
    if cell is None:
        return ""
    if isinstance(cell, Num):
        return cell.text()
    if isinstance(cell, dict):
        return format(cell["value"], cell["fmt"]) + cell.get("unit", "")
    return str(cell)


def markdown_table(columns, rows) -> str:
    """A markdown table of ``columns`` and rows of cells (stored or live)."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(cell_text(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------- machine


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def peak_flops() -> tuple[float, str]:
    """An upper bound on this machine's float64 rate (flop/s) and how it was computed:
    cores in the CPU affinity × the clock /proc/cpuinfo reports × flops per cycle per
    core at the widest vector unit its flags name, with two FMA units (AVX-512: 2 × 8
    doubles × 2 = 32; AVX2/FMA: 16; otherwise 4). Turbo above the reported clock is not
    counted; everything else is generous, so a time derived from it is a floor."""
    info = _read("/proc/cpuinfo")
    mhz = next((float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")), None)
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    per_cycle, unit = (32, "AVX-512") if "avx512f" in flags else (16, "AVX2/FMA") if "fma" in flags else (4, "SSE2")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if mhz is None:
        return float("nan"), "no clock in /proc/cpuinfo"
    peak = cores * mhz * 1e6 * per_cycle
    return peak, f"{cores} cores × {mhz:,.0f} MHz × {per_cycle} flop/cycle ({unit}, 2 FMA units) = {peak / 1e9:,.0f} GFLOP/s"


def _memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    return platform.platform()


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001  (absent or broken: reported as None)
        return None


def machine_info() -> dict:
    """The machine and software a benchmark ran on (recorded with every run)."""
    import jax

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "equinox": _version("equinox"),
        "numpy": _version("numpy"),
        "backend": jax.default_backend(),
        "x64": bool(jax.config.jax_enable_x64),
        "compilation_cache": jax.config.jax_compilation_cache_dir or None,
    }


def machine() -> str:
    """One line describing the machine, for printouts."""
    m = machine_info()
    return (f"{m['cpu_count']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
            f"jax {m['jax']} on {m['backend']}")


# ---------------------------------------------------------------- arguments


def parser(description: str, quick: dict) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` and ``--json``; ``quick`` holds the defaults
    that ``--quick`` substitutes (by destination name; arguments given explicitly still
    win). Parse with :func:`parse_args`."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true",
                    help=f"tiny sizes so that the chain runs in a test ({QUICK_LABEL}): " +
                         ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in quick.items()))
    ap.add_argument("--json", metavar="PATH", help="write what was measured to this JSON file")
    ap.set_defaults(_quick_defaults=quick)
    return ap


def parse_args(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, substituting the quick-mode defaults when ``--quick`` is given."""
    first, _ = ap.parse_known_args(argv)
    # argparse fills in a default only where the namespace has no value yet
    start = argparse.Namespace(**first._quick_defaults) if first.quick else None
    return ap.parse_args(argv, namespace=start)


def display_path(path: str) -> str:
    """``path`` relative to the project when it lies inside it (``.venv/bin/python``)."""
    rel = os.path.relpath(os.path.abspath(path), PROJECT_DIR)
    return path if rel.startswith("..") else rel


def command_line(argv: list[str]) -> str:
    """The command that reproduces a run: the interpreter and script as seen from the
    project root, and the arguments without ``--json`` (where the record goes is not
    part of the measurement)."""
    args, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a == "--json":
            skip = True
        elif not a.startswith("--json="):
            args.append(a)
    parts = [display_path(sys.executable), display_path(argv[0]), *args]
    return " ".join(shlex.quote(p) for p in parts)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the record


class Record:
    """What one benchmark run measured, printed as it goes and written as JSON.

    ``line(text)`` prints a line of context; ``table(...)`` prints a markdown table;
    ``target(...)`` states a target and whether the measurement met it; ``data(...)``
    keeps raw series (for the report's figures); ``save()`` writes the JSON when
    ``--json`` was given. Nothing is formatted twice: the report renders the same cells.
    """

    def __init__(self, name: str, args: argparse.Namespace, argv: list[str] | None = None):
        argv = list(sys.argv if argv is None else argv)
        self.path = getattr(args, "json", None)
        self._t0 = time.perf_counter()
        self.doc = {
            "schema": SCHEMA,
            "name": name,
            "script": f"benchmarks/{name}.py",
            "command": command_line(argv),
            "argv": argv,
            "quick": bool(getattr(args, "quick", False)),
            "args": {k: _plain(v) for k, v in vars(args).items() if not k.startswith("_") and k != "json"},
            "started": _now(),
            "load_average_start": os.getloadavg()[0],
            "machine": machine_info(),
            "lines": [],
            "tables": [],
            "targets": [],
            "data": {},
        }
        print(f"command: {self.doc['command']}" + (f"  [{QUICK_LABEL}]" if self.doc["quick"] else ""))

    def line(self, text: str = "") -> None:
        """Print a line of context and keep it."""
        print(text)
        if text:
            self.doc["lines"].append(text)

    def table(self, key: str, title: str, columns: list[str], rows: list[list]) -> None:
        """Print a markdown table (preceded by its title) and keep its cells."""
        for row in rows:
            if len(row) != len(columns):
                raise ValueError(f"table {key!r}: a row has {len(row)} cells for {len(columns)} columns: {row}")
        stored = [[cell_json(c) for c in row] for row in rows]
        self.doc["tables"].append({"key": key, "title": title, "columns": list(columns), "rows": stored})
        print(f"\n{title}\n" if title else "")
        print(markdown_table(columns, stored))

    def target(self, what: str, measured: Num, goal: str, met: bool) -> None:
        """A target of the issues (``goal``, e.g. ``>= 20x``) and the measured value."""
        entry = {"what": what, "measured": cell_json(measured), "goal": goal, "met": bool(met)}
        self.doc["targets"].append(entry)
        print(f"target: {what}: {cell_text(measured)} (goal {goal}) — {'met' if met else 'NOT met'}")

    def data(self, key: str, value) -> None:
        """Raw values for figures (lists of numbers, dicts of lists)."""
        self.doc["data"][key] = json.loads(json.dumps(value, default=_plain))

    def save(self) -> None:
        """Write the record (when ``--json`` was given) with the end time and load."""
        self.doc["finished"] = _now()
        self.doc["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.doc["load_average_end"] = os.getloadavg()[0]
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1, ensure_ascii=False)
        os.replace(tmp, self.path)
