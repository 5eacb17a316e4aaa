"""Flow head on linear_gaussian, 20% missing: C2ST ≤ 0.55 (see _sampling.py)."""

import pytest

from ._sampling import check_sampling_head

pytestmark = pytest.mark.slow


def test_flow_head_passes_c2st_with_missing_observations(trained):
    """The issue's target (C2ST ≤ 0.55) and the point estimate are asserted; our extra
    check that log q − log p on the truths has sd < 0.5 nats is open (issue 4): 0.52 in
    one run, 0.42 in another, so it is reported as an expected failure when it misses."""
    (sd,) = check_sampling_head(trained, "flow", 0.55, 0.2, (0.2,), density_sd=None)
    if sd >= 0.5:
        pytest.xfail(f"log-density sd {sd:.2f} >= 0.5 nats with 20% missing (open, issue 4)")
