"""``make bench BENCH_QUICK=1`` end to end, into a temporary folder: every benchmark script
runs in quick mode and leaves its JSON record, the report has every section and its
figures, and the numbers in the report are the ones the scripts measured and printed.

One run (module fixture) serves every check; with ``--dist loadfile`` the file stays on
one worker.
"""

import json
import operator
import re
import sys
import time

import pytest
from PIL import Image

from ..helpers import xla_o0_flags
from ._bench import PROJECT_DIR, common, report

pytestmark = pytest.mark.slow

#: Far above the measured quick chain (see the test's printout): only a hang should reach it.
TIMEOUT_S = 900
NAMES = report.benchmark_names()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run the Makefile target once (without re-installing: the stamp counts as fresh).
    Quick mode's numbers are not representative anyway, and at its sizes compilation is
    most of the run: XLA compiles at backend optimisation level 0 here, as the notebook
    tests do."""
    import os
    import subprocess

    base = tmp_path_factory.mktemp("bench")
    run_dir, out = base / "run", base / "site" / "RESULTS.md"
    cmd = ["make", "--no-print-directory", "-C", str(PROJECT_DIR), "-o", ".venv/.installed-stamp", "bench",
           "BENCH_QUICK=1", f"BENCH_OUT={run_dir}", f"BENCH_REPORT={out}", f"PY={sys.executable}"]
    t = time.perf_counter()
    env = {**os.environ, "XLA_FLAGS": xla_o0_flags()}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    seconds = time.perf_counter() - t
    print(f"make bench BENCH_QUICK=1: {seconds:.0f} s")
    records = {}
    for name in NAMES:
        path = run_dir / f"{name}.json"
        if path.exists():
            records[name] = json.loads(path.read_text())
    return {"proc": proc, "seconds": seconds, "run_dir": run_dir, "out": out, "records": records,
            "text": out.read_text() if out.exists() else ""}


def test_make_bench_quick_completes(quick_run):
    proc = quick_run["proc"]
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "make bench: report" in proc.stdout
    index = json.loads((quick_run["run_dir"] / "run.json").read_text())
    assert index["status"] == "done" and [s["name"] for s in index["scripts"]] == NAMES
    print({s["name"]: s["seconds"] for s in index["scripts"]})


def test_every_benchmark_left_its_record(quick_run):
    assert sorted(quick_run["records"]) == sorted(NAMES)
    for name, rec in quick_run["records"].items():
        assert rec["quick"] is True and rec["name"] == name and "--quick" in rec["command"]
        assert rec["tables"] and all(t["rows"] for t in rec["tables"]), name
        assert rec["finished"] >= rec["started"]


def test_report_has_every_section_labelled_quick(quick_run):
    text = quick_run["text"]
    assert text.startswith("# Benchmark results") and "do not edit by hand" in text
    assert f"**{common.QUICK_LABEL}.**" in text and "make bench BENCH_QUICK=1" in text
    for name, rec in quick_run["records"].items():
        assert f"(`benchmarks/{name}.py`) — {common.QUICK_LABEL}" in text, name
        assert f"```\n{rec['command']}\n```" in text
        assert f"Record: `{name}.json` (sha256 {report._sha256(str(quick_run['run_dir'] / (name + '.json')))[:12]})" \
            in text


def test_report_tables_are_the_printed_measurements(quick_run):
    """Each table of each record appears, cell for cell, in the report and in what the
    script printed (its log)."""
    text = quick_run["text"]
    for name, rec in quick_run["records"].items():
        log = (quick_run["run_dir"] / f"{name}.log").read_text()
        for table in rec["tables"]:
            rendered = common.markdown_table(table["columns"], table["rows"])
            assert rendered in text, (name, table["key"])
            assert rendered in log, (name, table["key"])


def _number(text: str) -> float:
    """The number at the start of a displayed cell: ``1,234.5 s`` → 1234.5."""
    return float(re.match(r"-?[\d,]*\.?\d+(e[-+]?\d+)?", text.replace("−", "-")).group().replace(",", ""))


def _decimals(fmt: str) -> int | None:
    m = re.search(r"\.(\d+)f", fmt)
    return int(m.group(1)) if m else (0 if fmt.endswith("d") else None)


def _report_rows(text: str, columns: list[str]) -> list[list[str]]:
    """The body rows of the report's table with this header, parsed from the markdown."""
    lines = text.splitlines()
    start = lines.index("| " + " | ".join(columns) + " |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_numbers_parsed_from_the_report_are_the_records(quick_run):
    """Independent of the shared formatter: parse the report's cells back into numbers and
    compare with the recorded values to the displayed precision."""
    text, checked = quick_run["text"], 0
    for name in ("simulate", "oracle", "amortized", "reprocess"):
        table = quick_run["records"][name]["tables"][0]
        for row, parsed in zip(table["rows"], _report_rows(text, table["columns"]), strict=True):
            for cell, shown in zip(row, parsed, strict=True):
                if isinstance(cell, dict):
                    decimals = _decimals(cell["fmt"])
                    tol = 0.5 * 10 ** -decimals if decimals is not None else 5e-3 * abs(cell["value"])
                    assert abs(_number(shown) - cell["value"]) <= tol * (1 + 1e-9), (name, shown, cell)
                    checked += 1
    assert checked >= 20, checked


_OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


def test_target_verdicts_follow_from_the_measurements(quick_run):
    targets = [t for rec in quick_run["records"].values() for t in rec["targets"]]
    assert {n for n, rec in quick_run["records"].items() if rec["targets"]} >= {"oracle", "amortized", "gates",
                                                                                  "reprocess", "emulator"}
    for t in targets:
        op, threshold = re.match(r"(>=|<=|<|>) ([\d,.e+-]+)", t["goal"]).groups()
        assert _OPS[op](t["measured"]["value"], float(threshold.replace(",", ""))) == t["met"], t
        verdict = "met" if t["met"] else "**not met**"
        assert f"| {t['what']} | {common.cell_text(t['measured'])} | {t['goal']} | {verdict} |" in quick_run["text"]


def test_figures_are_drawn_from_this_run(quick_run):
    out_dir, run_dir = quick_run["out"].parent, quick_run["run_dir"]
    for name, plots in report.FIGURES.items():
        sha = report._sha256(str(run_dir / f"{name}.json"))
        for filename, _ in plots:
            path = out_dir / "figures" / filename
            assert path.stat().st_size > 0
            assert f"](figures/{filename})" in quick_run["text"]
            assert Image.open(path).text["Source"].endswith(f"{name}.json sha256:{sha}")
