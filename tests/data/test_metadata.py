"""Every store opens with a plain ``xr.open_zarr`` (consolidated metadata, no warning) and
describes its variables with CF-style attributes."""

import warnings

import xarray as xr

from vardax_core.data import write_catalogue, write_pairs
from vardax_core.problems import get_problem


def _open_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path)


def test_pairs_and_catalogue_stores_carry_cf_attributes_and_consolidated_metadata(tmp_path):
    problem = get_problem("linear_gaussian")
    pairs = write_pairs(problem, str(tmp_path / "pairs.zarr"), n_events=20, seed=0, chunk_size=8)
    cat = write_catalogue(problem, str(tmp_path / "cat.zarr"), n_events=12, seed=1, chunk_size=5)
    for path, names in ((pairs, ("x", "y", "mask")), (cat, ("y", "mask", "x_true"))):
        ds = _open_quietly(path)
        for name in (*names, "event", "chunk_done"):
            attrs = ds[name].attrs
            assert attrs["long_name"] and attrs["description"], (path, name, attrs)
        assert ds["y"].attrs["units"] == "1" and "units" not in ds["mask"].attrs
        assert bool(ds["chunk_done"].all())


def test_oracle_and_analyses_schemas_describe_every_variable():
    from vardax_core.data import ANALYSES
    from vardax_core.oracle._store import ORACLE

    for schema in (ANALYSES, ORACLE):
        for spec in schema.variables:
            attrs = schema.variable_attrs(spec.name)
            assert attrs.get("description"), (schema.name, spec.name)
    assert ORACLE.variable_attrs("mean")["long_name"] == "4DVar analysis x*"
    assert ANALYSES.variable_attrs("mean")["long_name"] == "posterior mean of x0"
