"""The one rule that moves a champion (``flows.promote.challenge``), for heads and emulators
alike, on a registry of hand-made versions (no training): passing gates are required,
a worse version never displaces the champion unless forced, a version measured on other
events or settings is not compared."""

import pytest
from mlflow import MlflowClient

from flows import tracking
from flows.promote import challenge

pytestmark = pytest.mark.pipeline

QUALITY = "gate.emulator_forward.statistic"


@pytest.fixture()
def registry(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("challenge", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model("emu")

    def version(error: float, passed: bool = True, settings: str = "s1") -> str:
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, QUALITY, error)
        mv = client.create_model_version("emu", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                         tags={"gates_passed": str(passed).lower(), "gate_settings": settings})
        return str(mv.version)

    return client, version


def test_passing_better_or_forced_versions_take_the_champion_and_worse_ones_do_not(registry):
    client, version = registry
    kw = {"quality": QUALITY, "measured_on": "gate_settings", "head": False}
    first = version(0.010)
    assert challenge(client, "emu", first, **kw).champion == first  # no incumbent
    worse = version(0.020)
    kept = challenge(client, "emu", worse, **kw)
    assert not kept.changed and kept.champion == first and "worse than champion" in kept.reason
    assert tracking.current_alias(client, "emu", "champion") == first
    forced = challenge(client, "emu", worse, force=True, **kw)
    assert forced.changed and forced.champion == worse and "FORCED" in forced.reason
    better = version(0.005)
    took = challenge(client, "emu", better, **kw)
    assert took.changed and took.champion == better and "at least as good" in took.reason
    failing = version(0.001, passed=False)
    refused = challenge(client, "emu", failing, **kw)
    assert not refused.changed and refused.champion == better and "cannot be champion" in refused.reason
    # measured under other gate settings: not comparable, said so, and the version passed
    other = version(0.050, settings="s2")
    moved = challenge(client, "emu", other, **kw)
    assert moved.changed and "on the same gate_settings to compare with" in moved.reason
    events = [e["event"] for e in tracking.champion_events(client, "emu")]
    assert events.count("promoted") == 4  # first, forced, better, other
