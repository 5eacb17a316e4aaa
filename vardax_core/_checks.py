"""Input checks shared across the package: clear errors that name the variable."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx


def dataclass_from_dict(cls, d: dict | None):
    """``cls(**d)`` for a dataclass config, refusing unknown keys with a message that
    names them and lists the valid fields (a typo must never be silently ignored)."""
    d = dict(d or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)} (it has no field by that name); "
                         f"valid: {', '.join(sorted(names))}")
    return cls(**d)


class DataclassConfig:
    """``replace`` / ``to_dict`` / ``from_dict`` for the frozen dataclass configs
    (``from_dict`` refuses unknown keys, see :func:`dataclass_from_dict`)."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None):
        return dataclass_from_dict(cls, d)


def is_concrete(x) -> bool:
    """True when ``x`` holds values available on the host (not a tracer under jit)."""
    return not isinstance(x, jax.core.Tracer)


def check_shape(name: str, x, expected: tuple, what: str = "") -> None:
    """Raise ``ValueError`` unless ``x.shape == expected`` (``None`` entries match any size)."""
    shape = tuple(np.shape(x))
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        exp = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        extra = f" ({what})" if what else ""
        raise ValueError(f"`{name}` must have shape {exp}{extra}, got {shape}")


def check_positive(name: str, x) -> None:
    if is_concrete(x) and not np.all(np.asarray(x) > 0):
        raise ValueError(f"`{name}` must be strictly positive")


def check_observations(y, mask, obs_shape: tuple[int, ...], n_times: int, batched: bool = True):
    """Validate observations ``y`` and their ``mask`` against a problem's layout.

    Shapes must be ``(B, T, *obs_shape)`` (or ``(T, *obs_shape)`` with ``batched=False``),
    ``mask`` must be boolean, and every observed value (``mask`` True) must be finite.
    Unobserved entries may hold anything (NaN by convention). Returns ``(y, mask)``; under
    ``jit`` the finiteness check becomes an ``eqx.error_if`` runtime check.
    """
    lead = (None,) if batched else ()
    expected = (*lead, n_times, *obs_shape)
    check_shape("y", y, expected, "events, observation times, observation shape" if batched else "")
    check_shape("mask", mask, expected, "same as y")
    if jnp.asarray(mask).dtype != jnp.bool_:
        raise ValueError(f"`mask` must be a boolean array, got dtype {jnp.asarray(mask).dtype}")
    if is_concrete(y) and is_concrete(mask):
        # numpy, not jnp: inside a trace jnp would stage even constant inputs
        n_bad = int(np.sum(np.asarray(mask) & ~np.isfinite(np.asarray(y))))
        if n_bad:
            raise ValueError(
                f"`y` has {n_bad} non-finite value(s) at observed positions (mask True); "
                "mark missing observations with mask=False instead"
            )
        return jnp.asarray(y), jnp.asarray(mask)
    bad = jnp.asarray(mask) & ~jnp.isfinite(jnp.asarray(y))
    y = eqx.error_if(y, bad, "`y` has non-finite values at observed positions (mask True)")
    return y, mask


def masked(y, mask):
    """Observed values with unobserved entries replaced by 0 (never used as data: weights are 0)."""
    return jnp.where(mask, y, 0.0)
