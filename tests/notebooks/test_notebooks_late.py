"""Notebooks 05 (emulator) and 06 (the pipeline: Prefect, MLflow, reprocessing) run end
to end in small mode (a file of their own, so pytest-xdist runs them beside 01–04)."""

import pytest

from ._runner import NOTEBOOKS, run_notebook


@pytest.mark.slow
@pytest.mark.parametrize("number", ["05", "06"])
def test_notebook_runs_in_small_mode(number, tmp_path, jax_cache_env):
    run_notebook(NOTEBOOKS[number], tmp_path, jax_cache_env)
