"""Run a notebook as a script, in small-size mode, in a fresh interpreter.

Each notebook is a jupytext percent-format ``.py`` file, which is also a valid Python
script. It runs with ``VARDAX_NOTEBOOK_SMALL=1`` (small sizes), ``VARDAX_NOTEBOOK_TMP``
pointing at the test's temporary folder (the only place the notebooks write to), and
XLA's backend optimisation level 0: at these sizes compilation is most of the run time,
and level 0 compiles several times faster (the gates' ``fast_compile`` uses the same
setting).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from ..helpers import xla_o0_flags

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = {p.stem[:2]: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))}
#: Far above the measured small-mode times (15–100 s): only a hang should reach it.
TIMEOUT_S = 480


def run_notebook(path: Path, tmp_path: Path, extra_env: dict | None = None) -> float:
    """Execute ``path`` in small mode; returns the wall time, fails with its output."""
    env = {
        **os.environ,
        **(extra_env or {}),
        "VARDAX_NOTEBOOK_SMALL": "1",
        "VARDAX_NOTEBOOK_TMP": str(tmp_path / "work"),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "PYTHONWARNINGS": "ignore",
        "XLA_FLAGS": xla_o0_flags(),
    }
    # the notebooks choose their own homes for Prefect and MLflow; a caller's must not leak in
    for var in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH", "VARDAX_HOME"):
        env.pop(var, None)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, path.name], cwd=NOTEBOOK_DIR, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - t
    assert proc.returncode == 0, (f"{path.name} failed after {elapsed:.0f} s:\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-5000:]}")
    print(f"{path.name}: {elapsed:.1f} s")
    return elapsed
