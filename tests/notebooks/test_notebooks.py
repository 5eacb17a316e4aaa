"""The notebooks are percent-format notebooks, and 01–04 run end to end in small mode.

05 and 06 run in ``test_notebooks_late.py``: with pytest-xdist's ``--dist loadfile`` a
file runs on one worker, and the two halves take about the same time.
"""

import pytest

from ._runner import NOTEBOOKS, run_notebook


def test_every_cycle_stage_has_a_notebook():
    assert sorted(NOTEBOOKS) == ["01", "02", "03", "04", "05", "06"], sorted(NOTEBOOKS)


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_notebook_is_a_percent_format_notebook(number):
    import jupytext

    path = NOTEBOOKS[number]
    nb = jupytext.read(path)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, kinds
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "starts with a title"
    assert "from _small import" in path.read_text(), "every notebook has a small-size mode"


@pytest.mark.slow
@pytest.mark.parametrize("number", ["01", "02", "03", "04"])
def test_notebook_runs_in_small_mode(number, tmp_path, jax_cache_env):
    run_notebook(NOTEBOOKS[number], tmp_path, jax_cache_env)
