"""Flow head on linear_gaussian, 20% missing: C2ST ≤ 0.55 (see _sampling.py)."""

import pytest

from ._sampling import check_sampling_head

pytestmark = pytest.mark.slow


# open (issue 4): C2ST passes (0.50), but log q − log p on the truths has sd 0.52 nats
# (> 0.5) in one run, 0.42 in another
@pytest.mark.xfail(reason="log-density sd 0.52 > 0.5 with 20% missing", strict=False)
def test_flow_head_passes_c2st_with_missing_observations(trained):
    check_sampling_head(trained, "flow", 0.55, 0.2, (0.2,))
