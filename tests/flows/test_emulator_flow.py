"""Steps 3–4 in the pipeline: the ``train-emulator`` flow and the cycle's emulator step.

The smoke config (linear_gaussian, n=10) with an ``emulator`` section: a small emulator
(4 channels, one block, 200 trajectories, 10 epochs) that passes both emulator gates
honestly, and a degraded one (one epoch at learning rate 1e-6) that fails them. One
Prefect test server for the session, MLflow on SQLite in a temp folder. The cycle runs
first (it trains and gates the emulator, then — ``train_pairs`` — trains the heads on
pairs simulated with it and gates them against the physics oracle; the heads get a short
budget: their quality is not under test here); the flow tests after it reuse its caches.
"""

import json

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from flows.config import ConfigError, load_config, parse_config

EMULATOR = {
    "model": {"channels": 4, "depth": 1},
    "train": {"n_trajectories": 200, "max_epochs": 10, "batch_size": 64},
    "gates": {"forward_states": 500, "jacobian_states": 100},
}
DEGRADED = {**EMULATOR, "train": {"n_trajectories": 64, "max_epochs": 1, "batch_size": 64, "learning_rate": 1e-6,
                                  "warmup_epochs": 0}, "seed": 1}


def _with_emulator(base, emulator):
    data = base.model_dump(mode="json")
    data["emulator"] = emulator
    return type(base).model_validate(data)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, vardax_home):
    base = load_config("smoke")
    root = tmp_path_factory.mktemp("emulator-cycle")
    data = base.model_dump(mode="json")
    data["store_root"] = str(root / "stores")
    data["tracking"] = {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": (root / "artifacts").as_uri()}
    data["emulator"] = {**EMULATOR, "train_pairs": True}
    # the heads' side of the cycle is not under test here: a short budget for it
    data["data"] = {**data["data"], "n_train": 1000}
    data["heads"] = [{**data["heads"][0], "train": {**data["heads"][0]["train"], "max_epochs": 3}}]
    # (and small gates, which only the exploration profile may run: they never certify a head)
    data["gates"] = {"profile": "exploration", "settings": {"sbc_runs": 100, "adjoint_events": 10, "fast_compile": True},
                     "seed": 0}
    return type(base).model_validate(data)


@pytest.fixture(scope="module")
def cycle(prefect_harness, smoke):
    from flows.cycle import six_step_cycle

    return six_step_cycle(smoke)


@pytest.fixture(scope="module")
def client(cycle, smoke):
    mlflow.set_tracking_uri(smoke.tracking_uri())
    return MlflowClient(tracking_uri=smoke.tracking_uri(), registry_uri=smoke.tracking_uri())


# ---- config (no servers) -----------------------------------------------------------------------

def test_emulator_section_is_optional_off_by_default_and_validated():
    base = load_config("smoke")
    assert base.emulator is None and not base.emulator_enabled()
    on = _with_emulator(base, {})
    assert on.emulator_enabled() and on.emulator_model_name() == "vardax-linear_gaussian-emulator"
    assert not _with_emulator(base, {"enabled": False}).emulator_enabled()
    data = base.model_dump(mode="json")
    for bad, match in (({"train": {"max_epoch": 3}}, "max_epoch"), ({"model": {"kernel": 4}}, "kernel"),
                       ({"gates": {"forward_threshold": 0}}, "forward_threshold"),
                       ({"agreement": {"tolerance": 1}}, "tolerance"), ({"epochs": 3}, "emulator.epochs")):
        with pytest.raises(ConfigError, match=match):
            parse_config({**data, "emulator": bad})
    with pytest.raises(ConfigError, match="1D"):
        # the heads must fit the 2D problem (else their error comes first): a diagonal head
        heads = [{**data["heads"][0], "head": {**data["heads"][0]["head"], "covariance": "diag"}}]
        parse_config({**data, "problem": {"name": "linear_gaussian_2d"}, "heads": heads, "emulator": {}})


# ---- the cycle with the flag on ------------------------------------------------------------------

@pytest.mark.pipeline
@pytest.mark.slow
def test_cycle_with_the_flag_runs_the_emulator_step(cycle, client, smoke):
    ran = [(s["step"], s["cached"]) for s in cycle.steps]
    for step in ("train-emulator", "gate-emulator", "emulator-oracle"):
        assert (step, False) in ran, ran
    e = cycle.emulator
    assert e is not None
    assert e.outcome.passed and e.outcome.gates == {"emulator_forward": True, "emulator_jacobian": True}
    assert e.outcome.statistics["emulator_forward.statistic"] < 0.01
    assert e.outcome.statistics["emulator_jacobian.statistic"] < 0.05
    # the emulator-based oracle, gated against the physics oracle on every held-out event
    a = e.agreement
    assert a.oracle_hash == cycle.datasets["oracle"].hash and a.n_events == smoke.data.n_heldout
    assert a.passed and a.statistic >= 0.95, a.gate_json
    gate = json.loads(a.gate_json)
    assert gate["name"] == "emulator_agreement" and gate["details"]["emulator_solver"]["n_events"] == a.n_events
    name = smoke.emulator_model_name()
    mv = client.get_model_version(name, e.outcome.model.version)
    assert mv.tags["gate.emulator_agreement"] == "passed" and mv.tags["oracle_hash"] == a.oracle_hash
    assert client.get_run(mv.run_id).data.metrics["gate.emulator_agreement.statistic"] == a.statistic
    # the heads' registry is untouched by the emulator's
    assert {str(v.version) for v in client.search_model_versions(f"name='{smoke.registered_model_name()}'")} == \
        {o.model.version for o in cycle.outcomes}
    from flows.cycle import summary_markdown

    md = summary_markdown(cycle)
    assert name in md and "4DVar agreement" in md


@pytest.mark.pipeline
@pytest.mark.slow
def test_heads_train_on_emulated_pairs_and_are_gated_against_the_physics_oracle(cycle, client, smoke):
    import jax
    import zarr

    from flows.emulator import load_emulator_version
    from flows.simulate import pairs_path
    from vardax_core.data import open_pairs
    from vardax_core.emulator import emulator_fingerprint

    e = cycle.emulator.outcome
    assert cycle.training_pairs.startswith(f"emulator: {e.model.name} v{e.model.version}"), cycle.training_pairs
    ran = [(s["step"], s["what"], s["cached"]) for s in cycle.steps]
    assert ("simulate-emulator-pairs", "train", False) in ran
    assert ("simulate-pairs", "train", False) not in ran  # the physics training pairs were not needed
    physics_train, n, seed = pairs_path(smoke, "train")
    assert not __import__("os").path.exists(physics_train)
    train = cycle.datasets["pairs-train"]
    assert train.kind == "pairs-train-emulator" and train.n_events == n == smoke.data.n_train
    # the store: the problem's pairs, simulated with this emulator version
    problem = smoke.problem.build()
    attrs = zarr.open_group(store=train.path, mode="r").attrs
    emulator = load_emulator_version(e.model.model_uri)
    assert attrs["forward"] == "emulator" and attrs["seed"] == seed and attrs["problem_hash"] == problem.hash
    assert attrs["emulator_model"] == e.model.name and attrs["emulator_version"] == e.model.version
    assert attrs["emulator_fingerprint"] == emulator_fingerprint(emulator)
    # same x₀, noise and mask as the physics pairs of that seed: y differs only by the
    # emulator's window error, which its forward gate bounds (< 1 % per step)
    ds = open_pairs(train.path, problem)
    k = 200
    x, y, mask = problem.simulate(jax.random.key(seed), k)
    m = np.asarray(mask)
    np.testing.assert_array_equal(ds["x"].values[:k], np.asarray(x))
    np.testing.assert_array_equal(ds["mask"].values[:k], m)
    err = np.abs(ds["y"].values[:k] - np.asarray(y))[m]
    scale = np.abs(np.asarray(jax.vmap(problem.window)(x)))[m]
    assert 0 < err.max() and np.median(err) < 0.01 * np.median(scale), (np.median(err), np.median(scale))
    # every head: trained on those pairs (lineage tags), gated against the physics oracle
    assert cycle.datasets["oracle"].kind == "oracle"
    for outcome in cycle.outcomes:
        mv = client.get_model_version(smoke.registered_model_name(), outcome.model.version)
        assert mv.tags["pairs_forward"] == "emulator"
        assert mv.tags["pairs_emulator"] == f"{e.model.name}/{e.model.version}"
        assert mv.tags["pairs_hash"] == train.hash and mv.tags["oracle_hash"] == cycle.datasets["oracle"].hash
        assert client.get_run(outcome.model.run_id).data.tags["pairs_forward"] == "emulator"
        assert set(outcome.gates) == {"posterior_agreement", "adjoint_calibration", "sbc"}
        assert mv.tags["exploration.gates_passed"] in ("true", "false") and mv.tags["gates_passed"] == "pending"
    from flows.cycle import summary_markdown

    assert f"Training pairs of the heads: emulator: {e.model.name} v{e.model.version}" in summary_markdown(cycle)


def test_emulated_pairs_only_from_an_emulator_that_passed_its_gates():
    from flows.cycle import EmulatorStepResult, training_pairs_source
    from flows.emulator import EmulatorAgreement, EmulatorOutcome
    from flows.refs import ModelRef

    base = load_config("smoke")
    model = ModelRef(name="vardax-linear_gaussian-emulator", version="3", run_id="r", model_uri="models:/m/3",
                     head_name="emulator", head_type="conv_residual")

    def step(forward, jacobian, agrees=True):
        gates = {"emulator_forward": forward, "emulator_jacobian": jacobian}
        agreement = EmulatorAgreement(model=model, oracle_hash="h", passed=agrees, statistic=1.0 if agrees else 0.8,
                                      threshold=0.95, n_events=10, statistics={}, gate_json="{}")
        return EmulatorStepResult(outcome=EmulatorOutcome(model=model, passed=forward and jacobian, gates=gates,
                                                          statistics={}, report_json="{}"), agreement=agreement)

    assert training_pairs_source(base, None) == (False, "physics")
    assert training_pairs_source(_with_emulator(base, {}), step(True, True)) == (False, "physics")  # flag off
    on = _with_emulator(base, {"train_pairs": True})
    use, why = training_pairs_source(on, step(True, True))
    assert use and why.startswith("emulator: vardax-linear_gaussian-emulator v3 (forward and Jacobian gates passed")
    use, why = training_pairs_source(on, step(True, False))
    assert not use and "v3 failed emulator_jacobian" in why
    # step 4 is a gate too: an emulator whose 4DVar disagrees with the oracle feeds nothing
    use, why = training_pairs_source(on, step(True, True, agrees=False))
    assert not use and why.startswith("physics:") and "step 4" in why and "0.8 of events" in why
    with pytest.raises(ValueError, match="train_pairs"):
        training_pairs_source(on, None)
    with pytest.raises(ConfigError, match="train_pairs"):
        parse_config({**base.model_dump(mode="json"), "emulator": {"train_pairs": "maybe"}})


# ---- the train-emulator flow --------------------------------------------------------------------

@pytest.mark.pipeline
@pytest.mark.slow
def test_good_emulator_is_registered_gated_and_champion(cycle, client, smoke):
    from flows.emulator import load_emulator_version, train_emulator

    outcome = train_emulator(smoke)  # the cycle trained and gated it: served from the caches
    assert outcome.model.cached and outcome.cached
    assert outcome.model.version == cycle.emulator.outcome.model.version
    name, version = smoke.emulator_model_name(), outcome.model.version
    assert outcome.champion == version
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
    mv = client.get_model_version(name, version)
    assert mv.tags["kind"] == "emulator" and mv.tags["problem"] == "linear_gaussian"
    assert mv.tags["gate.emulator_forward"] == "passed" and mv.tags["gate.emulator_jacobian"] == "passed"
    assert mv.tags["gates_passed"] == "true"
    run = client.get_run(outcome.model.run_id)
    assert run.data.params["model.channels"] == "4" and run.data.params["train.max_epochs"] == "10"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 10
    assert run.data.metrics["gate.emulator_jacobian.passed"] == 1.0
    assert run.data.metrics["gate.emulator_forward.n_states"] == 500
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/gates/emulator.json"))
    assert [r["name"] for r in report["results"]] == ["emulator_forward", "emulator_jacobian"]
    # the registered pyfunc predicts what the emulator computes
    emulator = load_emulator_version(mv.source)
    x = np.asarray(smoke.problem.build().prior.sample(__import__("jax").random.key(0), (4,)))
    out = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict({"x": x})
    np.testing.assert_array_equal(out["x_next"], np.asarray(emulator(x)))


@pytest.mark.pipeline
@pytest.mark.slow
def test_degraded_emulator_fails_the_jacobian_gate_and_is_not_promoted(cycle, client, smoke):
    from flows.emulator import train_emulator

    name = smoke.emulator_model_name()
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    outcome = train_emulator(_with_emulator(smoke, DEGRADED))
    assert not outcome.model.cached and not outcome.passed
    assert outcome.gates["emulator_jacobian"] is False
    assert outcome.statistics["emulator_jacobian.statistic"] > 0.05
    mv = client.get_model_version(name, outcome.model.version)
    assert mv.tags["gate.emulator_jacobian"] == "failed" and mv.tags["gates_passed"] == "false"
    assert outcome.champion == champion != outcome.model.version
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion
    assert str(client.get_model_version_by_alias(name, "challenger").version) == outcome.model.version


@pytest.mark.pipeline
@pytest.mark.slow
def test_cli_emulator(cycle, smoke, tmp_path, capsys):
    from flows.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(smoke.model_dump_json())
    assert main(["emulator", "--config", str(cfg), "--oracle"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.index('{\n  "emulator"'):])
    assert printed["emulator"]["model"]["version"] == cycle.emulator.outcome.model.version
    assert printed["emulator"]["passed"] and printed["agreement"]["passed"]
    assert printed["agreement"]["cached"]  # the cycle ran it already
