"""Helpers shared by the notebooks.

- Small-size mode: ``VARDAX_NOTEBOOK_SMALL=1`` (set by ``tests/notebooks``) shrinks every
  size so each notebook runs in about half a minute (06, which starts Prefect and MLflow,
  in about two); unset, they run at full size. The tests also compile at XLA
  optimisation level 0 (``XLA_FLAGS=--xla_backend_optimization_level=0``), which at these
  sizes roughly halves the run time.
  The numbers printed in small mode only show that the code runs: read the full-size
  figures quoted in the markdown cells.
- Scratch space: every file a notebook writes goes under :func:`workdir`, a fresh
  temporary folder (below ``$VARDAX_NOTEBOOK_TMP`` when that is set).
"""

import os
import tempfile

SMALL = os.environ.get("VARDAX_NOTEBOOK_SMALL", "0") not in ("", "0", "false", "False")


def size(full, small):
    """``small`` in small-size mode, else ``full``."""
    return small if SMALL else full


def workdir(prefix: str = "vardax-notebook") -> str:
    """A new, empty temporary folder for this notebook's stores, figures and registries."""
    root = os.environ.get("VARDAX_NOTEBOOK_TMP") or None
    if root:
        os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{prefix}-", dir=root)
