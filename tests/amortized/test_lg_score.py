"""Score head on linear_gaussian: C2ST ≤ 0.60 (see _sampling.py). Trained once with 20%
missing and tested on complete and on gappy held-out observations."""

import pytest

from ._sampling import check_sampling_head

pytestmark = pytest.mark.slow


def test_score_head_passes_c2st(trained):
    check_sampling_head(trained, "score", 0.60, 0.2, (0.0, 0.2))
