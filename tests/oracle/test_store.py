"""The oracle store: exact contents, flagged (never NaN, never dropped) failures,
resumable and parallel writes, validated reads."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import zarr

from vardax_core.data import dataset_hash, open_pairs, write_pairs
from vardax_core.oracle import (
    CONVERGED,
    INVALID_INPUT,
    NONFINITE,
    OracleStoreWriter,
    StrongFourDVar,
    open_oracle,
    solve_to_store,
)
from tests.oracle._shared import LG_EVENTS, STRONG_EXACT, lg_problem
from vardax_core.problems import batched_linear_gaussian_posterior, get_problem

N, CHUNK = 20, LG_EVENTS
SOLVER = STRONG_EXACT
INVALID, DIVERGENT = 5, 9


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """A pairs store with one event holding NaN at an observed slot and one whose
    observations (1e200) overflow the cost."""
    p = lg_problem()
    path = str(tmp_path_factory.mktemp("oracle") / "pairs.zarr")
    write_pairs(p, path, N, seed=3, chunk_size=CHUNK)
    group = zarr.open_group(path, mode="r+")
    y, mask = group["y"][...], group["mask"][...]
    t, i = np.argwhere(mask[INVALID])[0]
    y[INVALID, t, i] = np.nan
    y[DIVERGENT] = np.where(mask[DIVERGENT], 1e200, np.nan)
    group["y"][...] = y
    return p, path


@pytest.fixture(scope="module")
def store(pairs, tmp_path_factory):
    p, path = pairs
    out = str(tmp_path_factory.mktemp("oracle") / "oracle.zarr")
    assert solve_to_store(p, path, out, solver=SOLVER, chunk_size=CHUNK) == out
    return out


def test_contents_are_exact_and_failures_flagged_never_nan(pairs, store):
    p, path = pairs
    ds, src = open_oracle(store, p), open_pairs(path, p)
    assert ds.sizes["event"] == N
    np.testing.assert_array_equal(ds.source_event.values, np.arange(N))
    for name, ref in (("x_true", "x"), ("y", "y"), ("mask", "mask")):
        np.testing.assert_array_equal(ds[name].values, src[ref].values)  # copied as is
    for name in ("mean", "std", "cov_chol", "cost", "grad_norm"):
        assert not np.any(np.isnan(ds[name].values)), name
    assert np.all(np.isfinite(ds["mean"].values)) and np.all(ds["std"].values > 0)

    reason, fallback = ds.reason.values, ds.fallback.values
    assert reason[INVALID] == INVALID_INPUT and reason[DIVERGENT] == NONFINITE
    bad = np.zeros(N, bool)
    bad[[INVALID, DIVERGENT]] = True
    np.testing.assert_array_equal(fallback, bad)
    assert not np.any(ds.converged.values[bad]) and np.all(ds.converged.values[~bad])
    assert np.all(reason[~bad] == CONVERGED)
    prior_std = np.sqrt(np.asarray(p.prior.cov.variance()))
    prior_chol = np.linalg.cholesky(np.asarray(p.prior.cov.as_matrix()))
    for e in (INVALID, DIVERGENT):  # the documented fallback: the prior
        np.testing.assert_array_equal(ds["mean"].values[e], np.asarray(p.prior.mean))
        np.testing.assert_array_equal(ds["std"].values[e], prior_std)
        np.testing.assert_array_equal(ds["cov_chol"].values[e], prior_chol)
        assert np.isinf(ds.cost.values[e]) and ds.iterations.values[e] == 0

    good = np.flatnonzero(~bad)
    mean, cov = batched_linear_gaussian_posterior(p, src.y.values[good], src.mask.values[good])
    np.testing.assert_allclose(ds["mean"].values[good], mean, rtol=1e-8, atol=1e-10)
    chol = ds["cov_chol"].values[good]
    np.testing.assert_allclose(np.einsum("bij,bkj->bik", chol, chol), cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ds["std"].values[good], np.sqrt(np.einsum("bii->bi", cov)), rtol=1e-8)

    attrs = ds.attrs
    assert attrs["problem_hash"] == p.hash and attrs["pairs_hash"] == dataset_hash(path)
    assert json.loads(attrs["solver_config"])["solver"] == "StrongFourDVar"
    assert json.loads(attrs["laplace_config"]) == {"method": "dense", "rank": None}
    assert attrs["has_cov_chol"] and "code_version" in attrs and str(NONFINITE) in json.loads(attrs["reason_codes"])


def test_interrupted_write_resumes_to_the_identical_store(pairs, store, tmp_path):
    p, path = pairs
    out = str(tmp_path / "resumed.zarr")

    def crash(done, total):
        if done == 1:
            raise KeyboardInterrupt("simulated crash after the first chunk")

    with pytest.raises(KeyboardInterrupt):
        solve_to_store(p, path, out, solver=SOLVER, chunk_size=CHUNK, progress=crash)
    with pytest.raises(ValueError, match="incomplete"):
        open_oracle(out, p)
    writer = OracleStoreWriter(p, path, out, solver=SOLVER, chunk_size=CHUNK)
    assert writer.pending_chunks() == [1, 2]
    assert writer.run() == 2 and writer.run() == 0  # a rerun of a complete store is a no-op
    assert dataset_hash(out) == dataset_hash(store)


def test_chunks_solved_by_separate_writers_in_any_order(pairs, store, tmp_path):
    """What a Prefect/Dask runner does: one writer creates the store, workers (here:
    separate writer objects, reversed order) solve chunks and write them by region."""
    p, path = pairs
    out = str(tmp_path / "parallel.zarr")
    h = dataset_hash(path)
    OracleStoreWriter(p, path, out, solver=SOLVER, chunk_size=CHUNK, pairs_hash=h)
    for c in reversed(range(3)):
        worker = OracleStoreWriter(p, path, out, solver=SOLVER, chunk_size=CHUNK, pairs_hash=h)
        data = worker.solve_chunk(c)
        worker.write_chunk(c, data)
    assert dataset_hash(out) == dataset_hash(store)


def test_resuming_with_other_settings_is_refused(pairs, store):
    p, path = pairs
    with pytest.raises(ValueError, match="solver_config"):
        OracleStoreWriter(p, path, store, solver=StrongFourDVar(), chunk_size=CHUNK)
    with pytest.raises(ValueError, match="events_hash"):
        OracleStoreWriter(p, path, store, solver=SOLVER, chunk_size=CHUNK, events=np.arange(N - 1, -1, -1))
    with pytest.raises(ValueError, match="problem_hash"):
        OracleStoreWriter(get_problem("linear_gaussian"), path, store, solver=SOLVER, chunk_size=CHUNK)


def test_event_selection_and_lowrank_layout(pairs, store, tmp_path):
    p, path = pairs
    events = np.array([17, 2, INVALID, 11])
    out = solve_to_store(p, path, str(tmp_path / "sel.zarr"), events=events, solver=SOLVER, chunk_size=CHUNK,
                         laplace_method="lowrank")
    sel, full = open_oracle(out, p), open_oracle(store, p)
    np.testing.assert_array_equal(sel.source_event.values, events)
    assert "cov_chol" not in sel.variables and not sel.attrs["has_cov_chol"]
    for name in ("x_true", "mean", "reason", "converged"):
        np.testing.assert_array_equal(sel[name].values, full[name].values[events])
    np.testing.assert_allclose(sel["std"].values, full["std"].values[events], rtol=1e-10)
    with pytest.raises(ValueError, match="events"):
        OracleStoreWriter(p, path, str(tmp_path / "x.zarr"), events=[N])


def test_open_oracle_validates(pairs, store, tmp_path):
    p, path = pairs
    with pytest.raises(ValueError, match="problem_hash"):
        open_oracle(store, get_problem("linear_gaussian"))
    with pytest.raises(ValueError, match="schema 'pairs'"):
        open_oracle(path, p)
    broken = str(tmp_path / "broken.zarr")
    import shutil

    shutil.copytree(store, broken)
    del zarr.open_group(broken, mode="r+")["std"]
    with pytest.raises(ValueError, match="missing variable `std`"):
        open_oracle(broken, p)


@pytest.mark.timeout(600)  # a regression hangs (batched LAPACK in two threads): fail, never hang
def test_chunks_solved_by_concurrent_threads(pairs, store, tmp_path):
    """A thread task runner solves chunks concurrently in one process (solves overlap:
    there is no lock) and the store equals the sequential one."""
    from concurrent.futures import ThreadPoolExecutor

    p, path = pairs
    out = str(tmp_path / "threads.zarr")
    writer = OracleStoreWriter(p, path, out, solver=SOLVER, chunk_size=CHUNK, pairs_hash=dataset_hash(path))
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(writer.process_chunk, range(writer.n_chunks)))
    assert dataset_hash(out) == dataset_hash(store)


def test_reference_posterior_is_stored_with_the_oracle(pairs, store, tmp_path):
    """``reference=`` adds the MCMC reference posterior: the exact Gaussian posterior's
    mean within Monte-Carlo error, its Jacobian the Kalman gain (within its MC error),
    fallback events never ``mixed``; a resume with other reference settings is refused."""
    from vardax_core.oracle import ReferenceConfig
    from vardax_core.problems import kalman_gain

    p, path = pairs
    cfg = ReferenceConfig(n_warmup=100, n_samples=500, n_draws=40)
    out = str(tmp_path / "ref.zarr")
    solve_to_store(p, path, out, solver=SOLVER, chunk_size=CHUNK, reference=cfg, reference_seed=1)
    ds = open_oracle(out, p)
    plain = open_oracle(store, p)
    for name in ("mean", "std", "converged", "fallback"):
        np.testing.assert_array_equal(ds[name].values, plain[name].values)  # the 4DVar part is unchanged
    assert ds["ref_draws"].shape == (N, 40, *p.state_shape)
    ok = ds["converged"].values
    assert not ds["ref_mixed"].values[~ok].any() and ds["ref_mixed"].values[ok].mean() >= 0.9
    good = ok & ds["ref_mixed"].values
    z = (ds["ref_mean"].values - ds["mean"].values) / ds["ref_mcse"].values
    assert np.all(np.abs(z[good]) < 5)  # the linear-Gaussian posterior mean is the 4DVar MAP
    np.testing.assert_allclose(ds["ref_std"].values[good], ds["std"].values[good], rtol=0.15)
    mask = ds["mask"].values
    for e in np.flatnonzero(good)[:3]:
        K = np.asarray(kalman_gain(p, mask[e])).reshape(ds["ref_jacobian"].shape[1:])
        K = np.where(mask[e], K, 0.0)
        err = np.sum((ds["ref_jacobian"].values[e] - K) ** 2) / np.sum(ds["ref_jacobian_var"].values[e])
        assert 0.25 < err < 4  # the squared error is the stated Monte-Carlo variance
    assert json.loads(ds.attrs["reference_config"])["seed"] == 1
    with pytest.raises(ValueError, match="reference_config"):
        OracleStoreWriter(p, path, out, solver=SOLVER, chunk_size=CHUNK, reference=cfg.replace(n_samples=400))
    with pytest.raises(ValueError, match="`reference` must be a ReferenceConfig"):
        OracleStoreWriter(p, path, str(tmp_path / "x.zarr"), solver=SOLVER, chunk_size=CHUNK, reference={})
