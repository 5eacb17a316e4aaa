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


def _with_mcmc_reference(lg, ds, noise=0.1, seed=0):
    """The dataset with ``ref_*`` variables as the oracle step stores them: the exact
    posterior with Monte-Carlo-like noise (mean ± noise·σ/√..., Jacobian K + N(0, V))."""
    from vardax_core.data import axis_dims
    from vardax_core.problems import kalman_gain

    rng = np.random.default_rng(seed)
    n = ds.sizes["event"]
    mask = ds["mask"].values
    K = np.stack([np.asarray(kalman_gain(lg, m)).reshape(*lg.state_shape, *m.shape) for m in mask])
    K = np.where(mask[:, None], K, 0.0)
    V = np.broadcast_to(np.where(mask[:, None], (noise * np.abs(K).mean()) ** 2, 0.0), K.shape)
    jdims = ("event", *axis_dims("state", lg.state_shape), "time", *axis_dims("obs", lg.obs_shape))
    sdims = ds["mean"].dims
    mixed = np.ones(n, bool)
    mixed[[5, 6]] = False  # unmixed events are left out of every gate
    return ds.assign(
        ref_mean=(sdims, ds["mean"].values + noise * ds["std"].values * rng.normal(size=ds["mean"].shape)),
        ref_std=(sdims, ds["std"].values), ref_mixed=(("event",), mixed),
        ref_jacobian=(jdims, K + np.sqrt(V) * rng.normal(size=K.shape)), ref_jacobian_var=(jdims, V),
    )


def test_gates_use_the_stored_mcmc_reference(exact, lg, oracle):
    from tests.gates._wrong import ScaledJacobian

    ds = _with_mcmc_reference(lg, oracle)
    report, _ = run_gates(exact, lg, ds, CONFIG, jax.random.key(0))
    assert report.passed, report.to_markdown()
    assert report.meta["reference"] == "MCMCReference" and report.meta["agreement_reference"] == "mcmc"
    assert report.meta["reference_unmixed_excluded"] == 2
    assert report["posterior_agreement"].details["n_events"] == 196
    adj = report["adjoint_calibration"]
    assert adj.details["statistic"] == "frobenius" and adj.statistic < 0.02
    assert np.median(adj.details["raw_ratio"]) > 0.05  # the MC noise that debiasing removes
    assert "adjoint against MCMCReference (frobenius)" in report.to_markdown()
    wrong, _ = run_gates(ScaledJacobian(exact, jnp.asarray(1.2)), lg, ds, CONFIG, jax.random.key(0))
    assert not wrong["adjoint_calibration"].passed
    assert wrong["adjoint_calibration"].statistic == pytest.approx(0.2, abs=0.01)


def test_reference_choice_is_explicit(exact, lg, oracle):
    with pytest.raises(ValueError, match="adjoint_reference='mcmc'"):
        run_gates(exact, lg, oracle, CONFIG.replace(adjoint_reference="mcmc"), jax.random.key(0))
    report, _ = run_gates(exact, lg, _with_mcmc_reference(lg, oracle), CONFIG.replace(adjoint_reference="ift"),
                          jax.random.key(0))
    assert report.meta["reference"] == "OracleReference(exact)" and report.passed
