"""run_gates end to end on linear_gaussian: report, diagnostics, figures."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.gates._wrong import ScaledCovariance
from tests.gates.conftest import SBC_CONFIG, oracle_dataset
from vardax_core.gates import GATE_NAMES, GateReport, KalmanReference, read_oracle, run_gates

CONFIG = SBC_CONFIG.replace(adjoint_events=50, band_simulations=500)


@pytest.fixture(scope="module")
def oracle(lg):
    conv = np.ones(200, bool)
    conv[[3, 17]] = False  # unconverged oracle events are excluded
    ds = oracle_dataset(lg, jax.random.key(42), 200, conv)
    ds["mean"][3] = np.nan  # … even when their values are unusable
    return ds


def test_exact_posterior_passes_all_three_gates(exact, lg, oracle, tmp_path):
    report, paths = run_gates(exact, lg, oracle, CONFIG, jax.random.key(0), str(tmp_path),
                              reference=KalmanReference(lg))
    assert report.passed, report.to_markdown()
    assert [r.name for r in report.results] == list(GATE_NAMES)
    assert report["posterior_agreement"].details["n_events"] == 198
    assert report.meta["oracle_unconverged_excluded"] == 2 and report.meta["problem"] == "linear_gaussian"
    assert report["adjoint_calibration"].details["n_events"] == 50
    assert report["sbc"].details["statistics"][-1] == "log_q"
    assert set(report.diagnostics["summary"]) >= {"coverage_max_abs_error", "tarp_max_abs_error", "z_rms",
                                                  "contraction_mean", "hpd_coverage_max_abs_error"}
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["adjoint_probe_errors.png", "agreement_z.png", "coverage.png", "sbc_ecdf_difference.png",
                     "sbc_rank_histograms.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(p) > 5000
    s = report.to_json()
    json.loads(s)
    assert GateReport.from_json(s).to_json() == s
    assert "**Gates: PASSED**" in report.to_markdown()


def test_a_wrong_posterior_fails_the_report(exact, lg, oracle):
    report, paths = run_gates(ScaledCovariance(exact, jnp.asarray(2.0)), lg, oracle, CONFIG, jax.random.key(0),
                              reference=KalmanReference(lg))
    assert paths == []
    assert not report.passed
    assert report["posterior_agreement"].passed and report["adjoint_calibration"].passed
    assert not report["sbc"].passed and "**FAIL**" in report.to_markdown()


def test_oracle_dataset_is_validated(lg, oracle):
    with pytest.raises(ValueError, match="no variable `std`"):
        read_oracle(oracle.drop_vars("std"), lg)
    with pytest.raises(ValueError, match="`mean`"):
        read_oracle(oracle.isel(state=slice(0, 5)), lg)
    with pytest.raises(ValueError, match="`mask` must be boolean"):
        read_oracle(oracle.assign(mask=oracle["mask"].astype(float)), lg)
    d = read_oracle(oracle.transpose("state", "obs", "time", "event"), lg)  # any dimension order
    assert d["y"].shape == (200, 5, 5) and d["converged"].sum() == 198
