"""Reprocessing memory stays flat as the catalogue grows (a generous bound; the
benchmark measures it precisely at 10^4 … 10^6 events)."""

import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from vardax_core.data import AnalysesWriter, write_catalogue
    from vardax_core.problems import ExactLinearGaussianPosterior, get_problem
    n, root = int(sys.argv[1]), sys.argv[2]
    p = get_problem("linear_gaussian")
    cat = write_catalogue(p, root + "/cat.zarr", n_events=n, seed=0, chunk_size=2000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    AnalysesWriter(ExactLinearGaussianPosterior(p), p, cat, root + "/an.zarr",
                   provenance={"model_version": "1"}, n_samples=8).run()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, before)
    """
)


@pytest.mark.slow
def test_peak_memory_is_flat_in_catalogue_size(tmp_path):
    peaks = {}
    for n in (4_000, 40_000):
        d = tmp_path / str(n)
        d.mkdir()
        out = subprocess.run([sys.executable, "-c", _SCRIPT, str(n), str(d)], capture_output=True, text=True,
                             timeout=600, check=True).stdout.split()
        peaks[n] = int(out[0])  # KiB
    # 10x the events (and 10x the output) must not raise peak RSS by more than 25 %
    assert peaks[40_000] <= 1.25 * peaks[4_000], peaks
