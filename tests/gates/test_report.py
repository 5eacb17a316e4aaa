"""GateResult / GateReport / GateConfig: JSON round trips, pass logic, markdown."""

import json
import math

import numpy as np
import pytest

from vardax_core.gates import GATE_NAMES, GateConfig, GateReport, GateResult


def _report(passed=(True, True, True), stat=0.5):
    return GateReport(
        tuple(GateResult(n, p, stat, 0.1, {"rule": "r", "arr": np.arange(3), "nan": float("nan")})
              for n, p in zip(GATE_NAMES, passed)),
        GateConfig().to_dict(), {"summary": {"z_rms": 1.0}, "curve": np.linspace(0, 1, 3)}, {"problem": "p"},
    )


def test_result_json_round_trip_is_strict_and_exact():
    r = GateResult("sbc", False, float("nan"), 0.01, {"p": np.array([0.5, np.inf]), "n": np.int64(3),
                                                       "ok": np.bool_(True), "reason": "x"})
    s = r.to_json()
    json.loads(s, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    r2 = GateResult.from_json(s)
    assert r2.to_json() == s
    assert math.isnan(r2.statistic) and r2.threshold == 0.01 and r2.passed is False
    assert r2.details == {"p": [0.5, "Infinity"], "n": 3, "ok": True, "reason": "x"}
    assert r2.reason == "x"


def test_report_round_trip_and_pass_logic():
    rep = _report()
    assert rep.passed
    s = rep.to_json()
    rep2 = GateReport.from_json(s)
    assert rep2.to_json() == s and rep2.passed
    assert rep2["sbc"].details["arr"] == [0, 1, 2]
    assert rep2.config == GateConfig().to_dict()
    assert not _report((True, False, True)).passed
    partial = GateReport(_report().results[:2])
    assert not partial.passed and partial.missing == ["sbc"]
    with pytest.raises(KeyError):
        partial["sbc"]
    with pytest.raises(ValueError, match="duplicate"):
        GateReport(_report().results[:1] * 2)


def test_markdown_summary_table():
    md = _report((True, False, True)).to_markdown()
    assert "**Gates: FAILED**" in md
    assert "| gate | result | statistic | rule | threshold |" in md
    assert "| adjoint_calibration | **FAIL** |" in md
    assert "z_rms" in md
    assert "**Gates: PASSED**" in _report().to_markdown()


def test_config_defaults_follow_the_design_and_round_trip():
    c = GateConfig()
    assert (c.tolerance_sigma, c.min_fraction, c.adjoint_threshold, c.sbc_alpha) == (1.0, 0.95, 0.05, 0.01)
    assert (c.sbc_draws + 1) % c.sbc_bins == 0
    assert GateConfig.from_json(c.to_json()) == c
    assert c.replace(sbc_runs=200).sbc_runs == 200


@pytest.mark.parametrize("bad, match", [
    (dict(sbc_draws=100, sbc_bins=20), "must divide"),
    (dict(sbc_runs=50, sbc_bins=20), "expected runs per bin"),
    (dict(sbc_alpha=0.0), "sbc_alpha"),
    (dict(min_fraction=1.5), "min_fraction"),
    (dict(n_probes=0), "n_probes"),
    (dict(adjoint_hessian="newton"), "adjoint_hessian"),
])
def test_config_rejects_invalid_values(bad, match):
    with pytest.raises(ValueError, match=match):
        GateConfig(**bad)


def test_config_from_dict_names_unknown_fields():
    with pytest.raises(ValueError, match="unknown field.*tolerance"):
        GateConfig.from_dict({"tolerance": 1.0})


def test_reports_say_which_reference_they_used_and_old_ones_still_read():
    new = _report()
    new.meta.update({"agreement_reference": "mcmc", "reference": "MCMCReference", "adjoint_statistic": "frobenius"})
    assert "References: agreement against mcmc; adjoint against MCMCReference (frobenius)" in new.to_markdown()
    # a report written before the reference fields existed (operator-norm adjoint, GN reference)
    old = {"results": [{"name": n, "passed": False, "statistic": 0.9, "threshold": 0.05,
                        "details": {"rule": "q0.95(‖J_f − J_o‖/‖J_o‖) < threshold", "probe_errors": [0.9]}}
                       for n in GATE_NAMES],
           "config": {**GateConfig().to_dict(), "adjoint_hessian": "gauss-newton"} | {"adjoint_statistic": None},
           "meta": {"reference": "OracleReference(gauss-newton)"}}
    del old["config"]["adjoint_statistic"], old["config"]["adjoint_tail"], old["config"]["adjoint_reference"]
    report = GateReport.from_dict(old)
    text = report.to_markdown()
    assert "adjoint against OracleReference(gauss-newton) (operator-norm)" in text and "**FAIL**" in text
