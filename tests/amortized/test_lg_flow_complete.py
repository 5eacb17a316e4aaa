"""Flow head on linear_gaussian, complete observations: C2ST ≤ 0.55 (see _sampling.py)."""

import pytest

from ._sampling import check_sampling_head

pytestmark = pytest.mark.slow


def test_flow_head_passes_c2st_on_complete_observations(trained):
    check_sampling_head(trained, "flow", 0.55, 0.0, (0.0,))
