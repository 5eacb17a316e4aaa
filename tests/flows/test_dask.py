"""Scale-out: oracle-solve on a Dask cluster writes the same store as the default runner."""

import numpy as np
import pytest

from flows.config import load_config
from flows.oracle import oracle_solve
from flows.simulate import simulate_pairs

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


def test_oracle_on_dask_local_cluster_matches_threads(prefect_harness, tmp_path):
    from distributed import LocalCluster

    from vardax_core.data import dataset_hash
    from vardax_core.oracle import open_oracle

    base = load_config("smoke").model_dump(mode="json")
    base["data"].update({"n_train": 100, "n_heldout": 60, "chunk_size": 50})
    base["oracle"].update({"chunk_size": 20})
    threads_cfg = type(load_config("smoke")).model_validate({**base, "store_root": str(tmp_path / "threads")})
    dask_cfg = type(load_config("smoke")).model_validate({**base, "store_root": str(tmp_path / "dask")})

    ref_threads = oracle_solve(threads_cfg, simulate_pairs(threads_cfg)["heldout"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        ref_dask = oracle_solve(dask_cfg, simulate_pairs(dask_cfg)["heldout"], dask_address=cluster.scheduler_address)
    a, b = open_oracle(ref_threads.path), open_oracle(ref_dask.path)
    assert a.sizes["event"] == b.sizes["event"] == 60 and int(a.attrs["n_events"]) == 60
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    assert ref_threads.hash == dataset_hash(ref_threads.path)
    assert ref_dask.hash == ref_threads.hash
