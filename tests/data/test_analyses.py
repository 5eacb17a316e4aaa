"""Catalogues and analyses: validation before writing, resumable, idempotent reprocessing."""

import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import zarr

from vardax_core.data import AnalysesWriter, dataset_hash, open_analyses, open_catalogue, write_catalogue
from vardax_core.problems import ExactLinearGaussianPosterior, get_problem

N, CHUNK = 900, 200
PROV = {"model_name": "exact", "model_version": "1", "run_id": "none"}


@pytest.fixture(scope="module")
def lg():
    return get_problem("linear_gaussian", missing_fraction=0.1)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, lg):
    path = str(tmp_path_factory.mktemp("cat") / "catalogue.zarr")
    return write_catalogue(lg, path, n_events=N, seed=4, chunk_size=CHUNK)


@pytest.fixture(scope="module")
def analyses(tmp_path_factory, lg, catalogue):
    out = str(tmp_path_factory.mktemp("an") / "analyses.zarr")
    AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2).run()
    return out


def test_catalogue_from_arrays_validates_first(tmp_path, lg):
    _, y, mask = lg.simulate(jax.random.key(0), 10)
    path = tmp_path / "c.zarr"
    bad = np.asarray(y).copy()
    bad[3, 1, 0] = np.inf
    m = np.asarray(mask).copy()
    m[3, 1, 0] = True
    with pytest.raises(ValueError, match="non-finite"):
        write_catalogue(lg, str(path), bad, m)
    with pytest.raises(ValueError, match="`y` must have shape"):
        write_catalogue(lg, str(path), np.asarray(y)[:, :2], m[:, :2])
    assert not path.exists()
    write_catalogue(lg, str(path), np.asarray(y), np.asarray(mask), chunk_size=4)
    ds = open_catalogue(str(path), lg)
    np.testing.assert_array_equal(ds.mask.values, mask)
    assert "x_true" not in ds


def test_analyses_match_the_posterior(lg, catalogue, analyses):
    ds = open_analyses(analyses)
    cat = open_catalogue(catalogue, lg)
    exact = ExactLinearGaussianPosterior(lg)
    post = exact.posterior(cat.y.values, cat.mask.values)
    np.testing.assert_allclose(ds["mean"].values, post.mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds["std"].values, post.std, rtol=1e-12)
    # empirical quantiles of 64 draws straddle the mean
    q = ds["quantiles"].values
    assert q.shape == (N, 3, 10) and np.all(q[:, 0] <= q[:, 2])
    assert ds["samples"].shape == (N, 64, 10)
    assert ds.attrs["model_version"] == "1" and ds.attrs["catalogue_hash"] == dataset_hash(catalogue)


def test_rerun_with_same_model_does_no_work(lg, catalogue, analyses):
    h = dataset_hash(analyses)
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, analyses, provenance=PROV, n_samples=64, seed=2)
    assert w.pending_chunks() == [] and w.run() == 0
    assert dataset_hash(analyses) == h


def test_another_model_version_is_refused_on_the_same_path(lg, catalogue, analyses):
    with pytest.raises(ValueError, match="identity"):
        AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, analyses,
                       provenance={**PROV, "model_version": "2"}, n_samples=64, seed=2)


def test_wrong_problem_or_missing_variable_refused_before_writing(tmp_path, lg, catalogue):
    other = get_problem("linear_gaussian", noise_std=0.5)
    out = tmp_path / "never.zarr"
    with pytest.raises(ValueError, match="does not match the model"):
        AnalysesWriter(ExactLinearGaussianPosterior(other), other, catalogue, str(out), provenance=PROV)
    assert not out.exists()
    broken = str(tmp_path / "broken.zarr")
    write_catalogue(lg, broken, n_events=50, seed=0, chunk_size=25)
    zarr.open_group(broken, mode="r+").__delitem__("y")
    with pytest.raises(ValueError, match="missing variable `y`"):
        AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, broken, str(out), provenance=PROV)
    assert not out.exists()


_KILL = textwrap.dedent(
    """
    import os, signal, sys
    from vardax_core.data import AnalysesWriter
    from vardax_core.problems import ExactLinearGaussianPosterior, get_problem
    lg = get_problem("linear_gaussian", missing_fraction=0.1)
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, sys.argv[1], sys.argv[2],
                       provenance={PROV!r}, n_samples=64, seed=2)
    w.run(progress=lambda done, total: os.kill(os.getpid(), signal.SIGKILL) if done == 2 else None)
    """
).format(PROV=PROV)


def test_kill_and_rerun_equals_uninterrupted(tmp_path, lg, catalogue, analyses):
    out = str(tmp_path / "killed.zarr")
    script = tmp_path / "kill.py"
    script.write_text(_KILL)
    proc = subprocess.run([sys.executable, str(script), catalogue, out], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2)
    assert len(w.pending_chunks()) == 3
    assert w.run() == 3
    a, b = open_analyses(out), open_analyses(analyses)
    for v in ("mean", "std", "quantiles", "samples", "event"):
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_pipelined_run_equals_chunk_by_chunk(tmp_path, lg, catalogue, analyses):
    """run() reads ahead and writes behind; processing chunks one by one, in any order,
    gives the same store byte for byte."""
    out = str(tmp_path / "by-chunk.zarr")
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2)
    for c in reversed(w.pending_chunks()):
        w.process_chunk(c)
    assert w.pending_chunks() == []
    assert dataset_hash(out) == dataset_hash(analyses)


def test_a_failed_write_stops_the_run_and_keeps_the_chunks_before_it(tmp_path, lg, catalogue, analyses, monkeypatch):
    out = str(tmp_path / "failed.zarr")
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2)
    write_chunk = w.store.write_chunk

    def failing(c, data):
        if c == 2:
            raise OSError("disk full")
        write_chunk(c, data)

    monkeypatch.setattr(w.store, "write_chunk", failing)
    with pytest.raises(OSError, match="disk full"):
        w.run()
    assert w.pending_chunks() == [2, 3, 4]  # in order: nothing after the failed chunk is marked done
    monkeypatch.undo()
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2)
    assert w.run() == 3
    assert dataset_hash(out) == dataset_hash(analyses)


def test_a_failed_read_stops_the_run_after_writing_what_was_analysed(tmp_path, lg, catalogue, monkeypatch):
    out = str(tmp_path / "failed-read.zarr")
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2)
    read = w._read

    def failing(c):
        if c == 3:
            raise OSError("catalogue unreadable")
        return read(c)

    monkeypatch.setattr(w, "_read", failing)
    with pytest.raises(OSError, match="catalogue unreadable"):
        w.run()
    assert w.pending_chunks() == [3, 4]


def test_resuming_over_a_changed_catalogue_is_refused(tmp_path, lg, catalogue):
    """A resumed run must continue the same catalogue: one changed value changes the
    catalogue hash, which is part of the analyses store's identity."""
    cat = str(tmp_path / "copy.zarr")
    shutil.copytree(catalogue, cat)
    out = str(tmp_path / "resumed.zarr")
    AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, cat, out, provenance=PROV).process_chunk(0)
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, cat, out, provenance=PROV)
    assert w.pending_chunks() == [1, 2, 3, 4]  # same catalogue: resumes
    y = zarr.open_group(cat, mode="r+")["y"]
    y[N - 1, 0, 0] = np.nextafter(float(y[N - 1, 0, 0]), np.inf)
    with pytest.raises(ValueError, match="identity"):
        AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, cat, out, provenance=PROV)


def test_a_given_catalogue_hash_is_used_as_is_and_writes_the_same_store(tmp_path, lg, catalogue, analyses, monkeypatch):
    """The flow hashes the catalogue once and passes the hash on: the writer then does not
    read the catalogue for it, and the store (attributes and every value) is the one a
    writer that hashed it itself writes."""
    import vardax_core.data._analyses as analyses_module

    given = dataset_hash(catalogue)

    def no_hashing(path):
        raise AssertionError("the catalogue was hashed although its hash was given")

    monkeypatch.setattr(analyses_module, "dataset_hash", no_hashing)
    out = str(tmp_path / "given.zarr")
    w = AnalysesWriter(ExactLinearGaussianPosterior(lg), lg, catalogue, out, provenance=PROV, n_samples=64, seed=2,
                       catalogue_hash=given)
    assert w.catalogue_hash == given and w.run() == N // CHUNK + 1
    monkeypatch.undo()
    a, b = open_analyses(out), open_analyses(analyses)
    assert a.attrs["catalogue_hash"] == b.attrs["catalogue_hash"] == given
    assert a.attrs["identity"] == b.attrs["identity"]
    for name in ("mean", "std", "quantiles", "samples"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert dataset_hash(out) == dataset_hash(analyses)


@pytest.mark.parametrize("kind", ["flow", "score"])
def test_heads_without_closed_form_std_reprocess_with_every_n_samples(tmp_path, lg, kind):
    """A flow or score champion has no std without draws: with n_samples 0 or 1 its std
    and quantiles come from its own (unstored) draws, never a crash or a zero std; with
    n_samples >= 2 from the stored draws."""
    from tests.amortized.test_interface import SMALL
    from vardax_core.amortized import build_posterior

    cfg = SMALL["flow-coupling" if kind == "flow" else "score"]
    post = build_posterior(lg, cfg, jax.random.key(0))
    cat = write_catalogue(lg, str(tmp_path / "cat.zarr"), n_events=40, seed=5, chunk_size=20)
    for n_samples in (0, 1, 8):
        out = str(tmp_path / f"an-{n_samples}.zarr")
        AnalysesWriter(post, lg, cat, out, provenance=PROV, n_samples=n_samples, seed=1, moment_draws=50).run()
        ds = open_analyses(out)
        std, q = ds["std"].values, ds["quantiles"].values
        assert np.all(np.isfinite(std)) and np.all(std > 0), n_samples
        assert np.all(q[:, 0] <= q[:, 1]) and np.all(q[:, 1] <= q[:, 2])
        assert ds.attrs["quantile_method"] == ("samples" if n_samples >= 2 else "samples (50 draws, not stored)")
        assert ("samples" in ds) == (n_samples > 0)
        if n_samples >= 2:
            continue  # the std of 8 stored draws is too noisy to compare entry by entry
        # the std is the head's own: within the sampling error of 50 draws (~10 % each)
        # of the std of 2000 draws of the same distribution
        ref = post.posterior(open_catalogue(cat, lg).y.values[:5], open_catalogue(cat, lg).mask.values[:5],
                             jax.random.key(9), n_samples=2000).std
        np.testing.assert_allclose(std[:5], ref, rtol=0.5)
