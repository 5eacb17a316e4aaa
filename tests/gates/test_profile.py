"""Gate profiles: which settings may certify a head."""

import pytest

from vardax_core.gates import (
    RELEASE_VERSION,
    GateConfig,
    GateProfile,
    is_current_release,
    release_profile,
    verdict_settings_json,
    weaker_settings,
)


@pytest.mark.parametrize(
    "weaker",
    [
        {"tolerance_sigma": 1.5}, {"min_fraction": 0.9}, {"agreement_events": 50},
        {"adjoint_threshold": 0.1}, {"adjoint_tail": 0.5}, {"adjoint_events": 50},
        {"adjoint_statistic": "operator-norm"}, {"adjoint_reference": "ift"}, {"adjoint_hessian": "gauss-newton"},
        {"sbc_runs": 500}, {"sbc_draws": 49, "sbc_bins": 10}, {"sbc_alpha": 0.001},
    ],
)
def test_each_weaker_verdict_setting_is_named_and_refused_by_the_release_profile(weaker):
    config = GateConfig(**weaker)
    named = weaker_settings(config)
    assert named and all(any(n.startswith(k + " ") for n in named) for k in weaker if k != "sbc_bins")
    with pytest.raises(ValueError, match="weaker than the release profile"):
        GateProfile("release", config)
    explore = GateProfile("exploration", config)
    assert not explore.certifies and explore.hash != release_profile().hash


def test_stricter_and_free_settings_stay_release():
    stricter = GateConfig(sbc_runs=2000, adjoint_threshold=0.03, adjoint_tail=0.2, min_fraction=0.99,
                          tolerance_sigma=0.8, adjoint_events=400, sbc_alpha=0.05, adjoint_reference="mcmc")
    assert weaker_settings(stricter) == []
    assert GateProfile("release", stricter).certifies
    # batching, compilation, diagnostics and scores never change a verdict, nor the hash
    free = GateConfig(sbc_chunk=8, adjoint_chunk=2, eval_chunk=4, fast_compile=True, coverage_levels=9,
                      band_simulations=100, band_level=0.9, score_draws=0)
    assert GateProfile("release", free).hash == release_profile().hash
    with pytest.raises(ValueError, match="gate profile `name`"):
        GateProfile("nightly", GateConfig())


def test_is_current_release_reads_a_recorded_verdict():
    ok = verdict_settings_json(GateConfig())
    assert is_current_release("release", RELEASE_VERSION, ok)
    assert is_current_release("release", str(RELEASE_VERSION), verdict_settings_json(GateConfig(sbc_runs=2000)))
    assert not is_current_release("exploration", RELEASE_VERSION, ok)
    assert not is_current_release("release", RELEASE_VERSION - 1, ok)
    assert not is_current_release("release", RELEASE_VERSION, verdict_settings_json(GateConfig(sbc_runs=100,
                                                                                               sbc_bins=10)))
    assert not is_current_release("release", RELEASE_VERSION, None)
    assert not is_current_release("release", RELEASE_VERSION, "{not json")


def test_the_gates_source_hash_follows_the_code(tmp_path, monkeypatch):
    import shutil

    import vardax_core.gates._profile as profile
    from vardax_core.gates import gates_source_hash

    h = gates_source_hash()
    assert len(h) == 12 and h == gates_source_hash()
    copy = tmp_path / "gates"
    shutil.copytree(profile.__file__.rsplit("/", 1)[0], copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(profile, "__file__", str(copy / "_profile.py"))
    assert profile.gates_source_hash() == h
    (copy / "_sbc.py").write_text((copy / "_sbc.py").read_text() + "\n# a fix\n")
    assert profile.gates_source_hash() != h
