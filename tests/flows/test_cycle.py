"""The six-step cycle on the smoke config, inside one Prefect test server, MLflow on SQLite.

One module-scoped run of the cycle (a head that passes and a head built to fail), then a
rerun (all steps cached), then a cycle with only a failing head (champion stays).
"""

import json
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from flows.config import load_config
from flows.cycle import six_step_cycle

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

BAD_HEAD = {"name": "undertrained", "type": "gaussian", "encoder": {"type": "identity"},
            "head": {"covariance": "diag"}, "train": {"max_epochs": 1, "learning_rate": 1e-7, "warmup_epochs": 0}}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, vardax_home):
    base = load_config("smoke")
    root = tmp_path_factory.mktemp("cycle")
    data = base.model_dump(mode="json")
    data["store_root"] = str(root / "stores")
    data["tracking"] = {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": (root / "artifacts").as_uri()}
    data["heads"] = data["heads"] + [BAD_HEAD]
    return type(base).model_validate(data)


@pytest.fixture(scope="module")
def first(prefect_harness, smoke):
    return six_step_cycle(smoke)


@pytest.fixture(scope="module")
def client(first, smoke):
    mlflow.set_tracking_uri(smoke.tracking_uri())
    return MlflowClient(tracking_uri=smoke.tracking_uri(), registry_uri=smoke.tracking_uri())


def test_cycle_registers_tags_and_promotes_only_the_passing_head(first, client, smoke):
    name = smoke.registered_model_name()
    by_head = {o.model.head_name: o for o in first.outcomes}
    good, bad = by_head["gaussian-full"], by_head["undertrained"]
    assert good.passed, good.report_json
    assert not bad.passed and not bad.gates["posterior_agreement"]
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    assert set(versions) == {good.model.version, bad.model.version}
    for o in (good, bad):
        tags = versions[o.model.version].tags
        assert tags["head_type"] == "gaussian" and tags["head_name"] == o.model.head_name
        assert tags["pairs_hash"] == first.datasets["pairs-train"].hash
        assert tags["oracle_hash"] == first.datasets["oracle"].hash
        assert tags["gates_passed"] == str(o.passed).lower()
        for g in ("posterior_agreement", "adjoint_calibration", "sbc"):
            assert tags[f"gate.{g}"] == ("passed" if o.gates[g] else "failed")
    assert str(client.get_model_version_by_alias(name, "champion").version) == good.model.version
    assert str(client.get_model_version_by_alias(name, "challenger").version) == bad.model.version
    assert first.promotion.champion == good.model.version
    # skill beside the gates: the well-trained head is within a few % of the reference
    # posterior mean's RMSE (smoke: the MCMC reference of the linear-Gaussian problem)
    st = good.statistics
    assert st["scores.rmse"] / st["scores.rmse_reference"] < 1.05
    assert st["scores.energy_score"] < by_head["undertrained"].statistics["scores.energy_score"]
    from flows.cycle import summary_markdown

    md = summary_markdown(first)
    assert "| RMSE (reference) | energy score (reference) | CRPS |" in md
    assert f"{st['scores.rmse']:.4g} ({st['scores.rmse_reference']:.4g})" in md


def test_runs_have_params_metrics_lineage_and_artifacts(first, client):
    good = next(o for o in first.outcomes if o.passed)
    run = client.get_run(good.model.run_id)
    assert run.data.params["model.head.covariance"] == "full"
    assert "train_loss" in run.data.metrics and "val_loss" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 2
    assert run.data.metrics["gate.posterior_agreement.passed"] == 1.0
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert inputs == {"pairs-train": first.datasets["pairs-train"].hash, "oracle": first.datasets["oracle"].hash}
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "gates")}
    assert "gates/report.json" in arts and "gates/figures" in arts
    figs = [a.path for a in client.list_artifacts(run.info.run_id, "gates/figures")]
    assert any(p.endswith(".png") for p in figs)
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/gates/report.json"))
    assert report["passed"] is True
    # the smoke config stores the MCMC reference posterior: the gates say they used it
    assert report["meta"]["reference"] == "MCMCReference" and report["meta"]["agreement_reference"] == "mcmc"
    assert report["meta"]["adjoint_statistic"] == "frobenius"


def test_champion_pyfunc_in_a_fresh_process_reproduces_predictions(first, smoke, tmp_path):
    from vardax_core.oracle import open_oracle

    from flows.tracking import load_posterior

    name = smoke.registered_model_name()
    ds = open_oracle(first.datasets["oracle"].path)
    y, mask = ds["y"].values[:16], ds["mask"].values[:16]
    np.savez(tmp_path / "obs.npz", y=y, mask=mask)
    script = textwrap.dedent(
        f"""
        import numpy as np, mlflow
        mlflow.set_tracking_uri({smoke.tracking_uri()!r})
        model = mlflow.pyfunc.load_model("models:/{name}@champion")
        obs = np.load({str(tmp_path / 'obs.npz')!r})
        out = model.predict({{"y": obs["y"], "mask": obs["mask"]}})
        np.savez({str(tmp_path / 'out.npz')!r}, **out)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    champion = MlflowClient(smoke.tracking_uri()).get_model_version_by_alias(name, "champion")
    local = load_posterior(champion.source).posterior(y, mask)
    np.testing.assert_array_equal(out["mean"], np.asarray(local.mean))
    np.testing.assert_array_equal(out["std"], np.asarray(local.std))


def test_rerun_hits_the_caches(first, smoke, client):
    again = six_step_cycle(smoke)
    assert all(step["cached"] for step in again.steps), again.steps
    assert [o.model.version for o in again.outcomes] == [o.model.version for o in first.outcomes]
    name = smoke.registered_model_name()
    assert len(client.search_model_versions(f"name='{name}'")) == len(first.outcomes)


def test_failing_head_alone_never_takes_the_champion_alias(first, smoke, client):
    name = smoke.registered_model_name()
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    data = smoke.model_dump(mode="json")
    data["heads"] = [{**BAD_HEAD, "name": "undertrained-2", "seed": 1}]
    summary = six_step_cycle(type(smoke).model_validate(data))
    (outcome,) = summary.outcomes
    assert not outcome.passed
    assert client.get_model_version(name, outcome.model.version).tags["gates_passed"] == "false"
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion
    assert str(client.get_model_version_by_alias(name, "challenger").version) == outcome.model.version
    assert not summary.promotion.changed


def test_a_passing_but_worse_version_never_displaces_the_champion(first, smoke, client):
    """Promotion ranks by the energy score on the held-out events and compares with the
    incumbent: a version that passed (here: the undertrained head's, marked passing in
    the registry for the test) but scores worse leaves the champion in place unless forced."""
    from flows.promote import promote

    name = smoke.registered_model_name()
    by_head = {o.model.head_name: o for o in first.outcomes}
    good, bad = by_head["gaussian-full"], by_head["undertrained"]
    assert bad.statistics["scores.energy_score"] > good.statistics["scores.energy_score"]
    worse = bad.model_copy(update={"passed": True, "gates": {g: True for g in bad.gates}})
    client.set_model_version_tag(name, bad.model.version, "gates_passed", "true")
    try:
        kept = promote(smoke, [worse])
        assert not kept.changed and kept.champion == good.model.version and "worse than champion" in kept.reason
        assert str(client.get_model_version_by_alias(name, "champion").version) == good.model.version
        forced = promote(smoke, [worse], force=True)
        assert forced.changed and forced.champion == bad.model.version and "FORCED" in forced.reason
        again = promote(smoke, [good])  # the better version takes it back on its own
        assert again.changed and again.champion == good.model.version and "at least as good" in again.reason
    finally:
        client.set_model_version_tag(name, bad.model.version, "gates_passed", "false")
        client.set_registered_model_alias(name, "champion", good.model.version)


def test_rank_key_orders_by_energy_score_first():
    from flows.promote import rank_key
    from flows.refs import GateOutcome, ModelRef

    def outcome(version, **stats):
        ref = ModelRef(name="m", version=str(version), run_id="r", model_uri="u", head_name="h", head_type="gaussian")
        return GateOutcome(model=ref, passed=True, gates={}, statistics=stats, report_json="{}")

    a = outcome(1, **{"scores.energy_score": 2.0, "posterior_agreement.statistic": 0.99})
    b = outcome(2, **{"scores.energy_score": 1.5, "posterior_agreement.statistic": 0.96})
    c = outcome(3, **{"posterior_agreement.statistic": 1.0})
    assert [o.model.version for o in sorted([a, b, c], key=rank_key)] == ["2", "1", "3"]


def test_cli_status_and_bad_config(first, smoke, tmp_path, capsys):
    from flows.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(smoke.model_dump_json())
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "champion:" in out and "gaussian-full" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: {name: nope}\nheads: [{name: a, type: gaussian}]\n")
    assert main(["cycle", "--config", str(bad)]) == 2
    assert "problem" in capsys.readouterr().err
