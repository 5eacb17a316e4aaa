"""Integration: real `mlflow server` and `prefect server` on loopback.

The smoke cycle and a catalogue reprocessing run against them; the scheduled deployment is
deployed; the champion alias is read over MLflow's REST API and the flow runs over
Prefect's API. Both servers run in their own process groups and are always stopped.
"""

import json
import os
import urllib.parse
import urllib.request

import pytest

from flows.config import load_config
from flows.servers import deploy_all, mlflow_server, prefect_server

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    with mlflow_server(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"), log=root / "mlflow.log") as ml, \
            prefect_server(home=root / "prefect", log=root / "prefect.log") as api:
        yield {"mlflow": ml, "prefect": api, "root": root}


def test_cycle_reprocess_and_deployments_against_real_servers(servers, vardax_home):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cycle import six_step_cycle
    from flows.reprocess import reprocess_catalogue
    from vardax_core.data import open_analyses, write_catalogue

    root = servers["root"]
    data = load_config("smoke").model_dump(mode="json")
    data["store_root"] = str(root / "stores")
    data["tracking"] = {"uri": servers["mlflow"]}
    config = type(load_config("smoke")).model_validate(data)
    name = config.registered_model_name()

    with temporary_settings(updates={PREFECT_API_URL: servers["prefect"]}):
        summary = six_step_cycle(config)
        assert summary.promotion.champion is not None, summary.outcomes
        catalogue = write_catalogue(config.problem.build(), str(root / "catalogue.zarr"), n_events=500, seed=9,
                                    chunk_size=200)
        ref = reprocess_catalogue(catalogue, config)
        again = reprocess_catalogue(catalogue, config)
        deploy_all(servers["prefect"], PROJECT)

    assert ref.model_version == summary.promotion.champion and not ref.skipped and again.skipped
    ds = open_analyses(ref.path)
    assert ds.sizes["event"] == 500 and ds.attrs["model_version"] == ref.model_version

    # MLflow REST: the champion alias
    q = urllib.parse.urlencode({"name": name, "alias": "champion"})
    mv = _get(f"{servers['mlflow']}/api/2.0/mlflow/registered-models/alias?{q}")["model_version"]
    assert mv["version"] == summary.promotion.champion
    assert {t["key"]: t["value"] for t in mv["tags"]}["gates_passed"] == "true"
    assert "**Verdict: PASSED**" in mv["description"]  # the model card, as the MLflow UI shows it

    # Prefect REST: the flow runs of this session and the scheduled deployment
    runs = _post(f"{servers['prefect']}/flow_runs/filter", {"limit": 200})
    flows = {f["id"]: f["name"] for f in _post(f"{servers['prefect']}/flows/filter", {})}
    completed = {flows[r["flow_id"]] for r in runs if r["state_type"] == "COMPLETED"}
    assert {"six-step-cycle", "simulate-pairs", "oracle-solve", "train-head", "validate-gates", "promote",
            "reprocess-catalogue"} <= completed
    deployments = {d["name"]: d for d in _post(f"{servers['prefect']}/deployments/filter", {})}
    nightly = deployments["nightly"]
    assert nightly["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    assert nightly["work_pool_name"] == "vardax-process"
    # never two nightly runs at once (a run due while one is active is cancelled); one cycle at a time
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert deployments["manual"]["global_concurrency_limit"]["limit"] == 1
    assert deployments["manual"]["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert "manual" in deployments
