"""The benchmark helpers as modules: ``benchmarks/`` is a folder of scripts, not a package,
so it goes on ``sys.path`` the way the scripts put it there themselves."""

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
PROJECT_DIR = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import _common as common  # noqa: E402
import _runner as runner  # noqa: E402
import report  # noqa: E402

__all__ = ["BENCH_DIR", "PROJECT_DIR", "common", "report", "runner"]
