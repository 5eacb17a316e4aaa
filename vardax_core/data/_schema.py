"""Dataset schemas: which variables a store holds, their dimensions and dtypes.

Dimension names are symbolic in a schema — ``"*state"`` expands to the problem's
state dimensions (``state`` for 1D, ``state_y, state_x`` for 2D) and ``"*obs"`` to its
observation dimensions — and are resolved against a :class:`~vardax_core.problems.Problem`
with :func:`resolve_dims`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SCHEMA_VERSION = 1

_AXIS_SUFFIXES = {1: ("",), 2: ("_y", "_x"), 3: ("_z", "_y", "_x")}


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """One data variable: symbolic ``dims`` (first is always ``event``) and ``dtype``."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    fill_value: float | int | bool = 0
    required: bool = True


@dataclasses.dataclass(frozen=True)
class DatasetSchema:
    """A store's variables; ``attrs`` maps a variable name to its CF-style attributes
    (``long_name``, ``units``, ``description``), written on the Zarr array at creation."""

    name: str
    variables: tuple[VariableSpec, ...]
    version: int = SCHEMA_VERSION
    attrs: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def variable_attrs(self, name: str) -> dict:
        """The CF-style attributes of variable ``name`` (a ``long_name`` at least)."""
        return {"long_name": name.replace("_", " "), **COMMON_ATTRS.get(name, {}), **self.attrs.get(name, {})}

    def variable(self, name: str) -> VariableSpec:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)


def axis_dims(prefix: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """Dimension names for a ``shape``: ``state`` (1D), ``state_y, state_x`` (2D), …"""
    if len(shape) not in _AXIS_SUFFIXES:
        raise ValueError(f"unsupported {prefix} rank {len(shape)}: shape {shape}")
    return tuple(prefix + s for s in _AXIS_SUFFIXES[len(shape)])


def resolve_dims(dims: tuple[str, ...], sizes: dict[str, tuple[int, ...]]) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """Expand ``*state``/``*obs``-style entries. ``sizes`` maps a symbolic group (e.g.
    ``"state"``) to its shape; plain names map to a 1-tuple or are left unsized (None)."""
    names, lens = [], []
    for d in dims:
        if d.startswith("*"):
            group = d[1:]
            shape = sizes[group]
            names += axis_dims(group, shape)
            lens += list(shape)
        else:
            names.append(d)
            lens.append(sizes[d][0] if d in sizes else None)
    return tuple(names), tuple(lens)


def cf(long_name: str, description: str, units: str | None = None) -> dict:
    """CF-style attributes. The problems are non-dimensional: model quantities have units
    "1"; flags and counts carry none."""
    return {"long_name": long_name, "description": description, **({"units": units} if units else {})}


#: attributes of variables with the same meaning in every store (and the store's own)
COMMON_ATTRS = {
    "x": cf("initial state x0", "the window's initial state, drawn from the prior", "1"),
    "x_true": cf("true initial state", "the simulated truth x0 of the event (synthetic events only)", "1"),
    "y": cf("observations", "observed values y_t = H(M_t(x0)) + noise at the window's observation times; "
            "missing positions hold a fill value and mask False", "1"),
    "mask": cf("observation mask", "True where y holds an observation"),
    "event": cf("event index", "position of the event in the store"),
    "chunk_done": cf("chunk written", "True once the event chunk's data is stored (resumable writes)"),
    "time": cf("observation time", "observation times of the window", "1"),
    "quantile": cf("quantile level", "probability level of each stored quantile"),
}


PAIRS = DatasetSchema(
    name="pairs",
    variables=(
        VariableSpec("x", ("event", "*state"), "float64", np.nan),
        VariableSpec("y", ("event", "time", "*obs"), "float64", np.nan),
        VariableSpec("mask", ("event", "time", "*obs"), "bool", False),
    ),
)


CATALOGUE = DatasetSchema(
    name="catalogue",
    variables=(
        VariableSpec("y", ("event", "time", "*obs"), "float64", np.nan),
        VariableSpec("mask", ("event", "time", "*obs"), "bool", False),
        VariableSpec("x_true", ("event", "*state"), "float64", np.nan, required=False),
    ),
)

ANALYSES = DatasetSchema(
    name="analyses",
    variables=(
        VariableSpec("mean", ("event", "*state"), "float64", np.nan),
        VariableSpec("std", ("event", "*state"), "float64", np.nan),
        VariableSpec("quantiles", ("event", "quantile", "*state"), "float64", np.nan),
        VariableSpec("samples", ("event", "sample", "*state"), "float32", np.nan, required=False),
    ),
    attrs={
        "mean": cf("posterior mean of x0", "the amortized posterior's mean of the initial state given y", "1"),
        "std": cf("posterior standard deviation of x0", "marginal standard deviations of the amortized posterior",
                  "1"),
        "quantiles": cf("posterior quantiles of x0", "marginal quantiles at the `quantile` levels", "1"),
        "samples": cf("posterior draws of x0", "independent draws of the amortized posterior", "1"),
    },
)
