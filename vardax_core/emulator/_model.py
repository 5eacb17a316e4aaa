"""The neural emulator F_ψ: a forward model that is a periodic convolutional residual network.

    x_{k+s} = x_k + d_mean + d_std · g_ψ((x_k − x_mean) / x_std)

``g_ψ`` is a stack of 1D convolutions with circular (wrap) padding over the ring of
state variables (``eqx.nn.Conv1d(padding_mode="CIRCULAR")`` — no ``jnp.fft``, which
XLA's CPU backend cannot mix with LAPACK calls in one program; see
``vardax_core.problems._spectral``). The standardisation statistics are scalars
pooled over the components, so the emulator commutes with cyclic shifts of the ring,
as Lorenz-96's dynamics do. With ``product`` the first layer also forms products of
two linear convolutions (a bilinear layer, as in Brajard et al. 2020): quadratic
dynamics such as Lorenz-96's advection term are then representable by one layer.

One call of :meth:`ConvResidualEmulator.step` advances ``steps_per_call`` model steps
of the physics (default 1: a drop-in for one model step, so
``problem.with_forward(emulator)`` runs every oracle solver unchanged). Outputs are
float64 whatever the network dtype (``config["dtype"]``).
"""

from __future__ import annotations

import dataclasses
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_shape
from ..amortized._encoders import _conv_stack
from ..amortized._nets import DTYPES, activation, cast_floats, positive_int, resolve
from ..problems import AbstractForwardModel, Problem

#: Version of the emulator's config layout and file format (``save_emulator``).
FORMAT_VERSION = 1
#: The architecture keys of an emulator config and their defaults.
EMULATOR_DEFAULTS = {
    "channels": 8,
    "depth": 2,
    "kernel": 5,
    "activation": "gelu",
    "product": True,
    "skip": True,
    "steps_per_call": 1,
    "dtype": "float64",
}
EMULATOR_TYPE = "conv_residual"
#: Top-level keys of a stored emulator config besides the architecture's.
DESCRIPTION_KEYS = ("type", "format_version", "state_shape", "physics_dt", "physics_forward", "problem",
                    "problem_hash", "training")


def resolve_emulator_config(config: dict | None) -> dict:
    """``EMULATOR_DEFAULTS`` updated with ``config`` and validated (unknown keys, ranges)."""
    config = dict(config or {})
    kind = config.pop("type", EMULATOR_TYPE)
    if kind != EMULATOR_TYPE:
        raise ValueError(f"unknown emulator type {kind!r}; available: {EMULATOR_TYPE!r}")
    cfg = resolve("emulator", config, EMULATOR_DEFAULTS)
    positive_int("emulator", cfg, "channels", "depth", "kernel", "steps_per_call")
    if cfg["kernel"] % 2 == 0:
        raise ValueError(f"emulator config: `kernel` must be odd (same-size periodic padding), got {cfg['kernel']}")
    activation(cfg["activation"])
    for name in ("product", "skip"):
        if not isinstance(cfg[name], bool):
            raise ValueError(f"emulator config: `{name}` must be true or false, got {cfg[name]!r}")
    if cfg["dtype"] not in DTYPES:
        raise ValueError(f"emulator config: `dtype` must be one of {', '.join(DTYPES)}, got {cfg['dtype']!r}")
    return {"type": kind, **cfg}


class ConvResidualEmulator(AbstractForwardModel):
    """A learned forward model on a ring of ``n`` variables (see the module docstring).

    ``dt`` is the time it advances per call (``steps_per_call`` physics steps).
    ``config`` (a static JSON string) rebuilds the skeleton (:func:`emulator_from_config`):
    format version, architecture, the physics problem's config and hash, and, after
    training, the training provenance. ``step`` works on one state; ``__call__``
    on one state or a batch (any leading axes).
    """

    first: eqx.nn.Conv1d
    blocks: tuple[eqx.nn.Conv1d, ...]
    out: eqx.nn.Conv1d
    skip: eqx.nn.Conv1d | None
    x_mean: Float[Array, ""]
    x_std: Float[Array, ""]
    d_mean: Float[Array, ""]
    d_std: Float[Array, ""]
    config_json: str = eqx.field(static=True)
    n: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    steps_per_call: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    product: bool = eqx.field(static=True)
    act: str = eqx.field(static=True)
    dtype: str = eqx.field(static=True)

    # ---- description ---------------------------------------------------------------------
    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n,)

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def problem_hash(self) -> str:
        return self.config["problem_hash"]

    def replace_config(self, **updates) -> "ConvResidualEmulator":
        """The same weights with top-level config entries replaced (e.g. ``training``)."""
        unknown = sorted(set(updates) - set(DESCRIPTION_KEYS) - set(EMULATOR_DEFAULTS))
        if unknown:
            raise ValueError(f"emulator config has no key(s) {', '.join(unknown)}")
        return dataclasses.replace(self, config_json=json.dumps({**self.config, **updates}, sort_keys=True))

    def with_statistics(self, x_mean, x_std, d_mean, d_std) -> "ConvResidualEmulator":
        """The same network with new standardisation statistics (float64 scalars)."""
        stats = tuple(jnp.asarray(v, dtype=jnp.float64).reshape(()) for v in (x_mean, x_std, d_mean, d_std))
        if not all(bool(jnp.isfinite(v)) for v in stats) or not (stats[1] > 0 and stats[3] > 0):
            raise ValueError("emulator statistics must be finite, with x_std > 0 and d_std > 0")
        return eqx.tree_at(lambda m: (m.x_mean, m.x_std, m.d_mean, m.d_std), self, stats)

    def statistics(self) -> dict:
        return {k: float(getattr(self, k)) for k in ("x_mean", "x_std", "d_mean", "d_std")}

    def astype(self, dtype: str) -> "ConvResidualEmulator":
        """The network's weights and arithmetic in ``dtype`` ("float32" or "float64");
        the statistics and the outputs stay float64."""
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
        first, blocks, out, skip = cast_floats((self.first, self.blocks, self.out, self.skip), DTYPES[dtype])
        return dataclasses.replace(self, first=first, blocks=blocks, out=out, skip=skip, dtype=dtype).replace_config(dtype=dtype)

    # ---- the network ---------------------------------------------------------------------
    def increment(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        """g(x) = F_ψ(x) − x in state units (float64), for one state."""
        a = activation(self.act)
        u = ((x - self.x_mean) / self.x_std).astype(DTYPES[self.dtype])[None]  # (1, n)
        h = self.first(u)
        c = self.channels
        h = jnp.concatenate([h[:c], h[c : 2 * c] * h[2 * c :]]) if self.product else a(h)
        g = self.skip(h) if self.skip is not None else 0.0
        for conv in self.blocks:
            h2 = a(conv(h))
            h = h + h2 if h2.shape == h.shape else h2
        g = (g + self.out(h))[0].astype(jnp.float64)
        return self.d_mean + self.d_std * g

    def step(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        """x_{k+s} = x_k + g(x_k) for one state (float64); s = ``steps_per_call``."""
        x = jnp.asarray(x, dtype=jnp.float64)
        return x + self.increment(x)

    def __call__(self, x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
        """:meth:`step` over any leading batch axes, jitted (one compilation per shape)."""
        x = jnp.asarray(x, dtype=jnp.float64)
        check_shape("x", x, (*(None,) * (x.ndim - 1), self.n), "*batch, n")
        return _batched_step(self, x.reshape(-1, self.n)).reshape(x.shape)


@eqx.filter_jit
def _batched_step(model: ConvResidualEmulator, x):
    return jax.vmap(model.step)(x)


def _skeleton(arch_json: str, n: int, dt: float, key, config_json: str) -> ConvResidualEmulator:
    """The emulator of a resolved architecture (only ever shape-evaluated: the weights
    are drawn by :func:`_init`)."""
    cfg = json.loads(arch_json)
    c, k = cfg["channels"], cfg["kernel"]
    k_first, k_blocks, k_out, k_skip = jax.random.split(key, 4)
    first = eqx.nn.Conv1d(1, 3 * c if cfg["product"] else c, k, padding=k // 2, padding_mode="CIRCULAR", key=k_first)
    features = 2 * c if cfg["product"] else c
    blocks = _conv_stack(eqx.nn.Conv1d, features, c, k, cfg["depth"], [1] * cfg["depth"], k_blocks)
    out = eqx.nn.Conv1d(c, 1, 1, key=k_out)
    skip = eqx.nn.Conv1d(features, 1, 1, use_bias=False, key=k_skip) if cfg["skip"] else None
    first, blocks, out, skip = cast_floats((first, blocks, out, skip), DTYPES[cfg["dtype"]])
    one, zero = jnp.ones((), jnp.float64), jnp.zeros((), jnp.float64)
    return ConvResidualEmulator(
        first=first, blocks=blocks, out=out, skip=skip, x_mean=zero, x_std=one, d_mean=zero, d_std=one,
        config_json=config_json, n=n, dt=dt * cfg["steps_per_call"], steps_per_call=cfg["steps_per_call"],
        channels=c, product=cfg["product"], act=cfg["activation"], dtype=cfg["dtype"],
    )


def _init_conv(rng: np.random.Generator, conv, dtype, scale: float = 1.0, zero_bias: bool = False):
    """Equinox's default initialisation of a convolution (uniform in ±1/√fan_in), drawn
    with NumPy into a shape-only layer."""
    lim = 1.0 / math.sqrt(conv.weight.shape[1] * conv.weight.shape[2])
    weight = jnp.asarray(scale * rng.uniform(-lim, lim, conv.weight.shape), dtype)
    if conv.bias is None:
        return eqx.tree_at(lambda c: c.weight, conv, weight)
    bias = np.zeros(conv.bias.shape) if zero_bias else rng.uniform(-lim, lim, conv.bias.shape)
    return eqx.tree_at(lambda c: (c.weight, c.bias), conv, (weight, jnp.asarray(bias, dtype)))


def _init(arch_json: str, n: int, dt: float, key, config_json: str) -> ConvResidualEmulator:
    """:func:`_skeleton`'s structure with weights drawn by NumPy from ``key``'s bits.
    (Drawing them with ``jax.random`` costs seconds of XLA compilation on a CPU, for a
    one-off initialisation.)"""
    shapes = eqx.filter_eval_shape(_skeleton, arch_json, n, dt, key, config_json)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    dtype = DTYPES[shapes.dtype]
    first = _init_conv(rng, shapes.first, dtype)
    blocks = tuple(_init_conv(rng, b, dtype) for b in shapes.blocks)
    # a small read-out: the untrained emulator starts close to x_{k+s} = x_k + d_mean
    out = _init_conv(rng, shapes.out, dtype, scale=0.1, zero_bias=True)
    skip = None if shapes.skip is None else _init_conv(rng, shapes.skip, dtype)
    one, zero = jnp.ones((), jnp.float64), jnp.zeros((), jnp.float64)
    return eqx.tree_at(
        lambda m: (m.first, m.blocks, m.out, m.skip, m.x_mean, m.x_std, m.d_mean, m.d_std), shapes,
        (first, blocks, out, skip, zero, one, zero, one), is_leaf=lambda x: x is None,
    )


def _arch(cfg: dict) -> str:
    return json.dumps({k: cfg[k] for k in EMULATOR_DEFAULTS}, sort_keys=True)


def _physics_dt(problem: Problem) -> float:
    dt = getattr(problem.forward, "dt", None)
    if dt is None or not math.isfinite(float(dt)) or float(dt) <= 0:
        raise ValueError(f"problem {problem.name!r}: its forward model has no positive `dt`")
    return float(dt)


def build_emulator(problem: Problem, config: dict | None, key) -> ConvResidualEmulator:
    """An untrained emulator of ``problem``'s forward model (architecture ``config``,
    keys and defaults in :data:`EMULATOR_DEFAULTS`), weights drawn from ``key``.

    The conv emulator assumes a 1D state on a ring whose dynamics commute with cyclic
    shifts (lorenz96, linear_gaussian); other state shapes are an error. Train it with
    :func:`~vardax_core.emulator.fit_emulator`.
    """
    cfg = resolve_emulator_config(config)
    if len(problem.state_shape) != 1:
        raise ValueError(
            f"the conv emulator needs a 1D (ring) state; problem {problem.name!r} has state shape "
            f"{problem.state_shape}"
        )
    n = problem.state_shape[0]
    if cfg["kernel"] > n:
        raise ValueError(f"emulator config: `kernel` ({cfg['kernel']}) must not exceed the ring size {n}")
    dt = _physics_dt(problem)
    config = {
        "format_version": FORMAT_VERSION,
        **cfg,
        "state_shape": [n],
        "physics_dt": dt,
        "physics_forward": type(problem.forward).__name__,
        "problem": problem.config,
        "problem_hash": problem.hash,
    }
    return _init(_arch(cfg), n, dt, key, json.dumps(config, sort_keys=True))


def emulator_from_config(config: dict, *, shapes_only: bool = False) -> ConvResidualEmulator:
    """The skeleton (untrained weights of the right structure and dtype) that a stored
    ``config`` describes; the weights are then read into it (:func:`load_emulator`).
    ``shapes_only``: leaves are ``jax.ShapeDtypeStruct`` (nothing is computed)."""
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"emulator config has format version {config.get('format_version')!r}; this code reads {FORMAT_VERSION}"
        )
    missing = [k for k in ("state_shape", "physics_dt", "problem_hash") if k not in config]
    if missing:
        raise ValueError(f"emulator config lacks {', '.join(missing)}")
    unknown = sorted(set(config) - set(DESCRIPTION_KEYS) - set(EMULATOR_DEFAULTS))
    if unknown:
        raise ValueError(f"emulator config has unknown key(s) {', '.join(map(repr, unknown))} (written by newer code?)")
    arch = {k: config[k] for k in EMULATOR_DEFAULTS if k in config}
    cfg = resolve_emulator_config({"type": config.get("type", EMULATOR_TYPE), **arch})
    (n,) = config["state_shape"]
    args = (_arch(cfg), int(n), float(config["physics_dt"]), jax.random.key(0), json.dumps(config, sort_keys=True))
    return eqx.filter_eval_shape(_skeleton, *args) if shapes_only else _init(*args)
