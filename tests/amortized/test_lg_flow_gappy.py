"""Flow head on linear_gaussian, 20% missing: C2ST ≤ 0.55 (see _sampling.py)."""

import pytest

from ._sampling import check_sampling_head, extra_checks_missed

pytestmark = pytest.mark.slow


def test_flow_head_passes_c2st_with_missing_observations(trained):
    """The issue's target (C2ST ≤ 0.55) is asserted. Our extra checks of the point estimate
    and the log-density are open with 20 % missing (issue 4) and reported as an expected
    failure when they miss — measured 2026-11-22: C2ST 0.536, RMS 0.101 σ_post, log q − log p
    mean −0.167, sd 0.585 nats (the complete-data flow meets all of them)."""
    (d,) = check_sampling_head(trained, "flow", 0.55, 0.2, (0.2,), extra_checks=False)
    missed = extra_checks_missed(d)
    if missed:
        pytest.xfail(f"flow head with 20% missing: {missed} ({d}); open, issue 4")
