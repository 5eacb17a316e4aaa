"""Helpers shared by the gates: the posterior protocol, order statistics, reasons."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_shape


def has_density(posterior) -> bool:
    """Whether ``posterior.log_prob`` is available (the protocol's ``has_density``)."""
    return bool(getattr(posterior, "has_density", False))


def check_output(name: str, x, expected: tuple) -> None:
    """Raise ``ValueError`` naming the posterior method ``name`` if ``x`` has the wrong shape."""
    check_shape(name, x, expected)


def point_estimate_one(posterior, y, mask, state_shape):
    """The point estimate ``posterior(y, mask)`` for one event (batched as B=1)."""
    out = posterior(y[None], mask[None])
    check_output("posterior(y, mask)", out, (1, *state_shape))
    return out[0]


def chunked_map(f, xs, chunk: int = 1):
    """``jax.lax.map(f, xs)``, optionally vmapping ``chunk``-sized blocks.

    ``chunk`` = 1 maps one item at a time (the gates' defaults are in ``GateConfig``,
    Batching). With ``chunk`` > 1 the leading axis
    (size n) is split into c = ceil(n / chunk) equal blocks of ceil(n / c) items,
    padding with copies of the last item (fewer than c) whose outputs are dropped, so
    ``f`` is compiled once (``lax.map(batch_size=…)`` compiles a remainder block too).
    """
    if chunk <= 1:
        return jax.lax.map(f, xs)
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    blocks = -(-n // min(chunk, n))
    size = -(-n // blocks)
    pad = blocks * size - n

    def padded(a):
        return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a

    xs = jax.tree_util.tree_map(lambda a: padded(a).reshape(blocks, size, *a.shape[1:]), xs)
    ys = jax.lax.map(jax.vmap(f), xs)
    return jax.tree_util.tree_map(lambda a: a.reshape(blocks * size, *a.shape[2:])[:n], ys)


# XLA's CPU backend spends most of a gate's compile time in LLVM optimisation. At
# optimisation level 0 the SBC of linear_gaussian (500 runs × 99 draws) compiles in
# 2.6 s instead of 16 s of CPU time, and runs 1.8x slower; for the lorenz96 heads the
# run is 3.6x (flow) to 6.6x (Gaussian) slower, which outweighs the compile time saved.
FAST_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0}


class DualJit:
    """``eqx.filter_jit`` of ``fn`` in two flavours: ``self(fast, *args)`` compiles with
    :data:`FAST_COMPILE_OPTIONS` when ``fast`` (``GateConfig.fast_compile``)."""

    def __init__(self, fn):
        self.fn = fn
        self._fast = eqx.filter_jit(fn, compiler_options=FAST_COMPILE_OPTIONS)
        self._full = eqx.filter_jit(fn)

    def __call__(self, fast: bool, *args):
        return (self._fast if fast else self._full)(*args)


def _estimates(posterior, y, mask, state_shape, chunk):
    return chunked_map(lambda a: point_estimate_one(posterior, a[0], a[1], state_shape), (y, mask), chunk)


_estimates_jit = DualJit(_estimates)


def point_estimates(posterior, y, mask, state_shape: tuple[int, ...], chunk: int = 1, fast_compile: bool = False):
    """``posterior(y, mask)`` over many events (jitted; see :func:`chunked_map` for
    ``chunk``), as float64 NumPy (E, *state)."""
    out = _estimates_jit(fast_compile, posterior, jnp.asarray(y), jnp.asarray(mask), tuple(state_shape), int(chunk))
    return np.asarray(out, dtype=np.float64)


def order_statistic(values, q: float) -> float:
    """The ceil(q·n)-th smallest of ``values``: ``order_statistic(v, q) < t`` exactly when
    at least a fraction q of the values are < t. NaN sorts last (counts as large)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        return math.nan
    k = max(1, math.ceil(q * v.size - 1e-9))
    return float(v[k - 1])


def nonfinite_reason(what: str, bad, total: int, label: str = "event") -> str:
    """A message naming how many (and which first few) items were non-finite."""
    idx = np.flatnonzero(np.asarray(bad))
    first = ", ".join(str(i) for i in idx[:5]) + (", …" if idx.size > 5 else "")
    return f"non-finite {what} in {idx.size} of {total} {label}s (first: {first})"


def component_names(state_shape: tuple[int, ...]) -> list[str]:
    """``x[i]`` (1D) or ``x[i,j]`` (2D) for every state component, in flattened order."""
    return [f"x[{','.join(str(i) for i in ix)}]" for ix in np.ndindex(*state_shape)]


def summary_quantiles(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {}
    return {"min": float(x.min()), "median": float(np.median(x)), "q95": float(np.quantile(x, 0.95)),
            "max": float(x.max()), "mean": float(x.mean())}
