"""The six-step cycle on the smoke config, inside one Prefect test server, MLflow on SQLite.

One module-scoped run of the cycle (a head that passes and a head built to fail), then a
rerun (all steps cached), then a cycle with only a failing head (champion stays).
"""

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from flows.config import load_config
from flows.cycle import six_step_cycle
from vardax_core.gates import gates_source_hash

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
        assert tags["gate_profile"] == "release" and tags["gate_source_hash"] == gates_source_hash()
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
    # the resolved config, system metrics, the gate metrics linked to the logged model, the card
    cfg = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/pipeline.json"))
    assert cfg["name"] == "smoke" and cfg["gates"]["profile"] == "release"
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    model_id = good.model.model_uri.removeprefix("models:/")
    linked = {m.key for m in client.get_logged_model(model_id).metrics or []}
    assert "gate.posterior_agreement.statistic" in linked
    card = client.get_model_version(good.model.name, good.model.version).description
    assert "**Verdict: PASSED** under the `release@v2` gate profile" in card and "posterior_agreement" in card


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
        # the logged signature is enforced: float32 observations are refused before predict
        try:
            model.predict({{"y": obs["y"].astype(np.float32), "mask": obs["mask"]}})
            raise SystemExit("float32 y was accepted")
        except mlflow.exceptions.MlflowException as e:
            assert "float" in str(e) and "y" in str(e), e
        drawn = model.predict({{"y": obs["y"], "mask": obs["mask"]}}, params={{"n_samples": 3, "seed": 1}})
        assert drawn["samples"].shape == (16, 3) + out["mean"].shape[1:], drawn["samples"].shape
        import vardax_core, os
        # vardax_core came from the model's own code/ folder, not the project checkout
        assert os.sep + "code" + os.sep in vardax_core.__file__, vardax_core.__file__
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    champion = MlflowClient(smoke.tracking_uri()).get_model_version_by_alias(name, "champion")
    local = load_posterior(champion.source).posterior(y, mask)
    np.testing.assert_array_equal(out["mean"], np.asarray(local.mean))
    np.testing.assert_array_equal(out["std"], np.asarray(local.std))
    # the model's environment names only installable, pinned packages (no 'vardax_core')
    import importlib.metadata as md

    reqs = open(mlflow.pyfunc.get_model_dependencies(f"models:/{name}@champion")).read().split()
    pins = dict(r.split("==") for r in reqs if "==" in r)
    assert "vardax_core" not in pins and {"jax", "equinox", "numpy", "mlflow"} <= set(pins)
    assert all(md.version(p) == v for p, v in pins.items())
    info = mlflow.models.get_model_info(f"models:/{name}@champion")
    assert [s.name for s in info.signature.inputs.inputs] == ["y", "mask"]
    assert {p.name for p in info.signature.params.params} == {"n_samples", "seed"}


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


def _variant(config, **sections):
    data = config.model_dump(mode="json")
    data.update(sections)
    return type(config).model_validate(data)


LAX = {"profile": "exploration", "seed": 0,
       "settings": {"sbc_runs": 100, "sbc_bins": 10, "agreement_events": 20, "adjoint_events": 20, "fast_compile": True,
                    "adjoint_threshold": 1.0, "adjoint_tail": 1.0}}


def test_exploration_gating_never_certifies_or_promotes(first, smoke, client):
    """Lax settings run only under the exploration profile: their verdict goes to
    ``exploration.*`` tags, the release verdict is untouched, and no exploration pass
    can make a version eligible or champion."""
    from flows import tracking
    from flows.gates import validate_gates, version_ref
    from flows.promote import promote

    name = smoke.registered_model_name()
    by_head = {o.model.head_name: o for o in first.outcomes}
    good, bad = by_head["gaussian-full"].model.version, by_head["undertrained"].model.version
    lax = _variant(smoke, gates=LAX)
    release_tags = {k: v for k, v in client.get_model_version(name, good).tags.items() if k.startswith("gate")}
    out = validate_gates(lax, version_ref(client, name, good), first.datasets["oracle"])
    tags = client.get_model_version(name, good).tags
    assert tags["exploration.gates_passed"] == str(out.passed).lower()
    assert tags["exploration.gate_profile"] == "exploration"
    assert {k: v for k, v in tags.items() if k.startswith("gate")} == release_tags
    assert tags["gate_profile"] == "release" and tags["gates_passed"] == "true"
    # the undertrained version, with an exploration "pass" written into its tags, stays out
    client.set_model_version_tag(name, bad, "exploration.gates_passed", "true")
    passing = by_head["undertrained"].model_copy(update={"passed": True})
    assert not promote(lax, [passing]).changed
    # and a release tag forged onto an exploration verdict is refused by the registry check
    client.set_model_version_tag(name, bad, "gates_passed", "true")
    client.set_model_version_tag(name, bad, "gate_profile", "exploration")
    try:
        with pytest.raises(ValueError, match="release gate profile"):
            tracking.set_champion(client, name, bad, smoke.problem.build().hash)
        assert str(client.get_model_version_by_alias(name, "champion").version) == good
    finally:
        client.set_model_version_tag(name, bad, "gates_passed", "false")
        client.set_model_version_tag(name, bad, "gate_profile", "release")


def test_a_failed_release_regate_demotes_the_champion(first, smoke, client):
    """Re-gated under stricter release settings (an adjoint threshold no head meets), the
    champion fails and loses the alias — to no one, since the other version never
    passed; the event is recorded. Re-gated under the defaults (a cached verdict, re-tagged)
    it passes again and promotion restores it."""
    from flows import tracking
    from flows.gates import validate_gates, version_ref
    from flows.promote import promote

    name = smoke.registered_model_name()
    good = next(o for o in first.outcomes if o.model.head_name == "gaussian-full")
    v = good.model.version
    assert str(client.get_model_version_by_alias(name, "champion").version) == v
    strict = _variant(smoke, gates={"profile": "release", "seed": 0, "settings": {"adjoint_threshold": 1e-9}})
    out = validate_gates(strict, version_ref(client, name, v), first.datasets["oracle"])
    assert not out.passed and not out.gates["adjoint_calibration"]
    assert tracking.current_alias(client, name, "champion") is None
    tags = client.get_model_version(name, v).tags
    assert tags["gates_passed"] == "false" and "adjoint_calibration" in tags["demoted"]
    event = tracking.champion_events(client, name)[-1]
    assert event["event"] == "demoted" and event["version"] == v and event["champion"] is None
    again = validate_gates(smoke, version_ref(client, name, v), first.datasets["oracle"])
    assert again.passed and client.get_model_version(name, v).tags["gates_passed"] == "true"
    assert promote(smoke, [again]).champion == v
    assert tracking.champion_events(client, name)[-1]["event"] == "promoted"

    # a crash while the failing verdict is being written (here: at its first tag) finds the
    # alias already gone — never a champion whose tags say it failed
    from flows.gates import record_verdict

    real = client.set_model_version_tag

    def crash(*a, **k):
        raise RuntimeError("killed")

    client.set_model_version_tag = crash
    try:
        with pytest.raises(RuntimeError, match="killed"):
            record_verdict(client, strict, out, first.datasets["oracle"])
    finally:
        client.set_model_version_tag = real
    assert tracking.current_alias(client, name, "champion") is None
    assert client.get_model_version(name, v).tags["gates_passed"] == "true"  # the interrupted write never landed
    assert promote(smoke, [again]).champion == v


def test_reprocessing_refuses_a_stale_champion_and_a_second_writer(first, smoke, client, tmp_path):
    """Reprocessing refuses a champion without a current passing verdict (here: gated by
    another vardax_core version), naming why; while an active run holds the analyses
    store's writer lock a second run stops before writing; the first's store ends
    complete, and a later run finds nothing to do."""
    from flows.reprocess import analyses_path, reprocess_catalogue
    from vardax_core.data import StoreBusy, dataset_hash, open_analyses, store_lock, write_catalogue

    name = smoke.registered_model_name()
    v = str(client.get_model_version_by_alias(name, "champion").version)
    catalogue = write_catalogue(smoke.problem.build(), str(tmp_path / "busy.zarr"), n_events=30, seed=4,
                                chunk_size=10)
    out = analyses_path(smoke, catalogue, dataset_hash(catalogue), v)
    current = client.get_model_version(name, v).tags["gate_code_version"]
    client.set_model_version_tag(name, v, "gate_code_version", "0.0.0-old")
    try:
        with pytest.raises(ValueError, match=r"no current passing verdict.*vardax_core 0\.0\.0-old"):
            reprocess_catalogue(catalogue, smoke)
    finally:
        client.set_model_version_tag(name, v, "gate_code_version", current)
    with store_lock(out, "analyses store"):  # the active run
        with pytest.raises(StoreBusy, match="being written by another run"):
            reprocess_catalogue(catalogue, smoke)
        assert not os.path.exists(out)
    ref = reprocess_catalogue(catalogue, smoke)
    ds = open_analyses(ref.path)
    assert ref.path == out and ref.model_version == v and ds.sizes["event"] == 30
    assert bool(ds["chunk_done"].all()) and np.isfinite(ds["mean"].values).all()
    assert reprocess_catalogue(catalogue, smoke).skipped


def test_a_version_of_another_problem_configuration_is_refused(first, smoke, client):
    """Same registered model (same problem name), other problem settings: the version's
    problem hash does not match, so promotion and the registry refuse it."""
    from flows import tracking
    from flows.promote import promote

    name = smoke.registered_model_name()
    good = next(o for o in first.outcomes if o.model.head_name == "gaussian-full")
    other = _variant(smoke, problem={"name": "linear_gaussian", "overrides": {"noise_std": 0.5}})
    assert other.registered_model_name() == name and other.problem.build().hash != smoke.problem.build().hash
    res = promote(other, [good])
    assert not res.changed and "problem_hash" in res.reason
    with pytest.raises(ValueError, match="problem_hash"):
        tracking.set_champion(client, name, good.model.version, other.problem.build().hash)


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


# ---- chaos: kill promotion and reprocessing at random points -------------------------------

CHAOS_TRIALS = 20


@pytest.fixture(scope="module")
def forkserver(tmp_path_factory):
    """Children forked from a server that preloaded the stack (tests/flows/_chaos.py),
    sharing a JAX compilation cache."""
    import multiprocessing

    from tests.flows import _chaos

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.flows._chaos"])
    done = ctx.Event()  # referenced until the child has it (a collected one is unlinked)
    ctx.jax_cache = str(tmp_path_factory.mktemp("jax-cache"))
    warm = ctx.Process(target=_chaos.run, args=("noop", done, ctx.jax_cache))  # starts the server (imports)
    warm.start()
    warm.join(300)
    assert warm.exitcode == 0
    return ctx


def _run_child(ctx, step, args, kill_at=None, store=None, kill_at_chunks=None):
    """Run the step ``step`` of tests/flows/_chaos.py in a forked child; SIGKILL it
    ``kill_at`` s after its start, or — with ``store`` — as soon as ``kill_at_chunks`` of
    the analyses store's chunks are marked done (polled every 2 ms: wherever the machine's
    load puts the writing, the kill lands inside it).
    Returns (seconds from start to the step's end, or to the kill; seconds to the store's
    appearance or None)."""
    import signal
    import time

    from tests.flows import _chaos

    done = ctx.Event()
    p = ctx.Process(target=_chaos.run, args=(step, done, ctx.jax_cache, *args))
    t0 = time.perf_counter()
    p.start()
    appeared = finished = None
    while p.is_alive() and finished is None:
        now = time.perf_counter() - t0
        if done.is_set():
            finished = now
        if store is not None and appeared is None and os.path.exists(os.path.join(store, "zarr.json")):
            appeared = now
        due = kill_at
        if kill_at_chunks is not None:
            due = now if appeared is not None and _chunks_done(store) >= kill_at_chunks else None
        if due is not None and now >= due:
            os.kill(p.pid, signal.SIGKILL)
            finished = now
        time.sleep(0.002)
    p.join(60)
    assert finished is not None or done.is_set(), f"the child failed on its own (exit code {p.exitcode})"
    return (finished if finished is not None else time.perf_counter() - t0), appeared


def _chunks_done(store) -> int:
    import zarr

    try:
        return int(np.sum(zarr.open_group(store, mode="r")["chunk_done"][...]))
    except (KeyError, FileNotFoundError, ValueError):
        return 0


def _assert_champion_current(client, name, problem_hash, trial):
    from flows import tracking

    champion = tracking.current_alias(client, name, "champion")
    if champion is not None:
        why = tracking.head_verdict_problems(client.get_model_version(name, champion).tags, problem_hash)
        assert not why, f"trial {trial}: champion {champion} without a current passing verdict: {why}"
    return champion


def test_chaos_killing_regate_and_promote_never_leaves_a_champion_without_a_current_pass(
        first, smoke, client, forkserver):
    """≥ 20 trials: the champion fails a release re-gate (demoted to the other passing
    version), passes again and is promoted back — each run SIGKILLed at a uniformly random
    time within an uninterrupted run's duration. After every kill the champion, if any,
    has a current passing release verdict."""
    import random

    from flows import tracking
    from flows.gates import record_verdict

    name = smoke.registered_model_name()
    problem_hash = smoke.problem.build().hash
    oracle = first.datasets["oracle"]
    good = next(o for o in first.outcomes if o.model.head_name == "gaussian-full")
    v = good.model.version
    mv = client.get_model_version(name, v)
    # a second passing version (same weights) for the demotion to fall back to
    alt = client.create_model_version(name, mv.source, run_id=mv.run_id, tags=mv.tags).version
    failed = good.model_copy(update={"passed": False, "gates": {**good.gates, "adjoint_calibration": False}})
    args = (smoke.model_dump_json(), failed.model_dump_json(), good.model_dump_json(), oracle.model_dump_json())

    def reset():
        record_verdict(client, smoke, good, oracle)
        tracking.set_champion(client, name, v, problem_hash, reason="chaos reset")

    try:
        reset()
        full, _ = _run_child(forkserver, "regate_and_promote", args)
        assert tracking.current_alias(client, name, "champion") == v  # demoted, then promoted back
        rng = random.Random(0)
        seen = set()
        for trial in range(CHAOS_TRIALS):
            reset()
            _run_child(forkserver, "regate_and_promote", args, kill_at=rng.uniform(0, full))
            seen.add((_assert_champion_current(client, name, problem_hash, trial),
                      client.get_model_version(name, v).tags["gates_passed"]))
        # the kills landed before, inside and after the demotion
        assert len(seen) >= 2, seen
    finally:
        client.delete_model_version(name, alt)
        reset()


def test_chaos_killing_reprocessing_leaves_a_complete_or_resumable_store(
        first, smoke, client, forkserver, tmp_path, monkeypatch):
    """≥ 20 runs of ``reprocess-catalogue`` SIGKILLed at a random point — half at a
    uniformly random time of an uninterrupted run, half while it writes (as soon as a
    uniformly random number of its remaining chunks, not all, are marked done: under load,
    a time after the store appears often missed the writing — 3 partial stores in 20 runs
    in a loaded CI run) — each run resuming what the killed one before it left. After every kill each chunk marked done holds exactly the uninterrupted run's
    values; a store that completes has every event once, equal to the uninterrupted run,
    in the one store of that champion; the last one is completed by a final rerun."""
    import random
    import shutil

    import zarr

    import flows.reprocess
    from flows.reprocess import analyses_path, reprocess_catalogue
    from tests.flows import _chaos
    from vardax_core.data import dataset_hash, open_analyses, write_catalogue

    monkeypatch.setattr(flows.reprocess, "get_run_logger", _chaos._plain_logger)
    name = smoke.registered_model_name()
    v = str(client.get_model_version_by_alias(name, "champion").version)
    catalogue = write_catalogue(smoke.problem.build(), str(tmp_path / "chaos.zarr"), n_events=240, seed=5,
                                chunk_size=10)
    out = analyses_path(smoke, catalogue, dataset_hash(catalogue), v)
    variables = ("mean", "std", "quantiles", "samples")
    args = (smoke.model_dump_json(), catalogue, 4)

    def wipe():
        shutil.rmtree(out, ignore_errors=True)

    wipe()
    _run_child(forkserver, "reprocess", args, store=out)  # fills the children's compilation cache
    wipe()
    full, appeared = _run_child(forkserver, "reprocess", args, store=out)
    assert appeared is not None
    print(f"chaos: an uninterrupted reprocessing run takes {full:.2f} s, its store appears at {appeared:.2f} s")
    ref = open_analyses(out).load()
    n_chunks = ref.sizes["event"] // 10
    wipe()

    def done_chunks(trial) -> int:
        """Chunks marked done, each checked against the uninterrupted run; a complete
        store checked whole."""
        if not (os.path.exists(os.path.join(out, "zarr.json")) and "chunk_done" in zarr.open_group(out, mode="r")):
            return 0
        group = zarr.open_group(out, mode="r")
        done = np.flatnonzero(group["chunk_done"][...])
        for c in done:
            sel = slice(10 * c, 10 * (c + 1))
            for var in variables:
                np.testing.assert_array_equal(group[var][sel], ref[var].values[sel], err_msg=f"trial {trial}: {var}")
        if done.size == n_chunks:
            ds = open_analyses(out).load()
            assert os.listdir(os.path.dirname(out)).count(os.path.basename(out)) == 1
            np.testing.assert_array_equal(ds["event"].values, np.arange(ref.sizes["event"]))
            for var in variables:
                np.testing.assert_array_equal(ds[var].values, ref[var].values, err_msg=f"trial {trial}: {var}")
        return int(done.size)

    rng = random.Random(1)
    partial = resumed = completed = 0
    for trial in range(CHAOS_TRIALS):
        before = done_chunks(trial)
        resumed += 0 < before < n_chunks
        if trial % 2 and n_chunks - before >= 2:  # killed while it writes: after 1 … all-but-one new chunks
            _run_child(forkserver, "reprocess", args, store=out, kill_at_chunks=rng.randint(before + 1, n_chunks - 1))
        else:
            _run_child(forkserver, "reprocess", args, kill_at=rng.uniform(0, full))
        done = done_chunks(trial)
        partial += 0 < done < n_chunks
        if done == n_chunks:
            completed += 1
            wipe()
    again = reprocess_catalogue.fn(catalogue, smoke, n_samples=4)  # the rerun after the last kill
    assert again.path == out and done_chunks(CHAOS_TRIALS) == n_chunks
    print(f"chaos: {partial} kills left a partial store, {resumed} runs resumed one, {completed} completed")
    assert partial >= CHAOS_TRIALS // 4 and resumed >= CHAOS_TRIALS // 4, (partial, resumed)
