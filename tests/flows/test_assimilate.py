"""``vardax assimilate``: the typed twin config, and the flow end to end on a short twin
(stores, reuse on rerun, figures, summary)."""

import pytest
import xarray as xr

from flows.assimilation import AssimilationConfig, load_assimilation_config
from flows.config import ConfigError

SMALL = {
    "name": "small", "twin": "l96_full_dt005", "n_cycles": 60, "burn_in": 10,
    "methods": {
        "clim": {"type": "climatology"},
        "oi": {"type": "optimal_interpolation", "b_scale": 0.02},
        "enkf": {"type": "enkf", "n_members": 24, "inflation": 1.03},
    },
}


def test_named_twin_configs_load():
    """One named config per published twin, each loading and building its steps."""
    import jax.numpy as jnp

    from flows.assimilation import TWIN_CONFIG_DIR
    from vardax_core.cycle import PUBLISHED_TWINS

    names = sorted(p.stem for p in TWIN_CONFIG_DIR.glob("*.yaml"))
    assert names == sorted(PUBLISHED_TWINS)
    for name in names:
        cfg = load_assimilation_config(name)
        assert cfg.twin == name and "enkf" in cfg.methods
        for spec in cfg.methods.values():
            spec.build(jnp.zeros(40), jnp.eye(40))


@pytest.mark.parametrize("change, where", [
    ({"twin": "nope"}, "twin"),
    ({"methods": {"x": {"type": "kalman"}}}, "methods.x"),
    ({"methods": {"x": {"type": "enkf", "inflation": 0.9}}}, "methods.x.enkf.inflation"),
    ({"burn_in": 60}, "burn_in"),
    ({"methods": {"x": {"type": "fourdvar", "lags": 2}}}, "methods.x.fourdvar.lags"),
    ({"methods": {"x": {"type": "ienks", "lag": 0}}}, "methods.x.ienks.lag"),
])
def test_bad_twin_configs_are_refused_by_path(tmp_path, change, where):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SMALL, **change}))
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_assimilation_config(str(path))


def test_unknown_twin_config_name_lists_the_named_ones():
    with pytest.raises(ConfigError, match="l96_full_dt005"):
        load_assimilation_config("no-such-twin")


def test_assimilate_flow_writes_stores_figures_and_reuses_them(prefect_harness, tmp_path, caplog):
    import yaml

    from flows.cli import main

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "store_root": str(tmp_path / "stores")}))
    assert main(["assimilate", "--config", str(path)]) == 0
    cfg = AssimilationConfig.model_validate({**SMALL, "store_root": str(tmp_path / "stores")})
    out = cfg.out_dir()
    twin = xr.open_zarr(out / "twin.zarr", consolidated=False)
    assert twin["truth"].shape == (61, 40) and twin["y"].shape == (60, 40)
    summaries = {}
    for name in SMALL["methods"]:
        ds = xr.open_zarr(out / f"{name}.zarr", consolidated=False)
        assert ds["analysis"].shape == (60, 40) and ds["pit"].shape == (60, 40)
        summaries[name] = ds.attrs["summary"]
    # the observations help: both data-using methods beat climatology by far
    assert summaries["oi"]["rmse_a"] < 0.3 * summaries["clim"]["rmse_a"]
    assert summaries["enkf"]["rmse_a"] < 0.3 * summaries["clim"]["rmse_a"]
    assert (out / "figures" / "rmse_spread.png").stat().st_size > 0 and (out / "figures" / "pit.png").exists()
    assert "| enkf |" in caplog.text  # the flow prints (log_prints) its summary
    caplog.clear()
    assert not list(out.glob("*.partial-*"))
    # a rerun reuses every store; another setting of one method recomputes only that one
    stamp = (out / "enkf.zarr" / "zarr.json").stat().st_mtime_ns
    assert main(["assimilate", "--config", str(path)]) == 0
    assert "enkf: store" in caplog.text
    caplog.clear()
    assert (out / "enkf.zarr" / "zarr.json").stat().st_mtime_ns == stamp
    changed = {**SMALL, "store_root": str(tmp_path / "stores"),
               "methods": {**SMALL["methods"], "enkf": {"type": "enkf", "n_members": 24, "inflation": 1.1}}}
    path.write_text(yaml.safe_dump(changed))
    assert main(["assimilate", "--config", str(path)]) == 0
    text = caplog.text
    assert "oi: store" in text and "enkf: analysis RMSE" in text
