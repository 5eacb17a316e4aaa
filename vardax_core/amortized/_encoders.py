"""Encoders: one event's standardised observations and mask → a feature vector.

Every encoder takes ``(y, mask)`` for one event, shapes ``(T, *obs_shape)``, where ``y``
is already standardised and holds 0 at missing positions, and returns ``(out_dim,)``
features. The mask is always an input, so a missing value is never confused with an
observed value that happens to equal the mean.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ._nets import activation, mlp, positive_int, resolve


class AbstractEncoder(eqx.Module):
    out_dim: eqx.AbstractVar[int]

    def __call__(self, y, mask):  # pragma: no cover - abstract
        raise NotImplementedError


def _flat_inputs(y, mask):
    return jnp.concatenate([y.ravel(), mask.ravel().astype(y.dtype)])


class IdentityEncoder(AbstractEncoder):
    """Features = the standardised values and the mask, flattened: ``2·T·prod(obs)``."""

    out_dim: int = eqx.field(static=True)

    def __call__(self, y, mask):
        return _flat_inputs(y, mask)


class MLPEncoder(AbstractEncoder):
    """An MLP on the flattened values and mask, plus (``skip``) a linear path, so a
    linear posterior mean is representable exactly."""

    net: eqx.nn.MLP
    skip: eqx.nn.Linear | None
    out_dim: int = eqx.field(static=True)

    def __call__(self, y, mask):
        v = _flat_inputs(y, mask)
        out = self.net(v)
        return out + self.skip(v) if self.skip is not None else out


def _conv_stack(conv_cls, in_ch, channels, kernel, depth, strides, key):
    keys = jax.random.split(key, depth)
    layers, c = [], in_ch
    for i in range(depth):
        layers.append(
            conv_cls(c, channels, kernel, stride=strides[i], padding=kernel // 2, padding_mode="CIRCULAR", key=keys[i])
        )
        c = channels
    return tuple(layers)


class PeriodicConv1DEncoder(AbstractEncoder):
    """Periodic (circular-padded) 1D convolutions over the observation ring, with the
    observation times and the mask as channels (2T), then a linear read-out of the
    flattened feature map; ``skip`` adds a linear path from the raw inputs."""

    convs: tuple[eqx.nn.Conv1d, ...]
    readout: eqx.nn.Linear
    skip: eqx.nn.Linear | None
    act: str = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)

    def __call__(self, y, mask):
        h = jnp.concatenate([y, mask.astype(y.dtype)], axis=0)  # (2T, P)
        a = activation(self.act)
        for conv in self.convs:
            h = a(conv(h))
        out = self.readout(h.ravel())
        return out + self.skip(_flat_inputs(y, mask)) if self.skip is not None else out


class Conv2DEncoder(AbstractEncoder):
    """Periodic 2D convolutions over image observations (T, H, W) with times and mask as
    channels; the last ``downsample`` layers have stride 2; linear read-out (+ ``skip``)."""

    convs: tuple[eqx.nn.Conv2d, ...]
    readout: eqx.nn.Linear
    skip: eqx.nn.Linear | None
    act: str = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)

    def __call__(self, y, mask):
        h = jnp.concatenate([y, mask.astype(y.dtype)], axis=0)  # (2T, H, W)
        a = activation(self.act)
        for conv in self.convs:
            h = a(conv(h))
        out = self.readout(h.ravel())
        return out + self.skip(_flat_inputs(y, mask)) if self.skip is not None else out


ENCODER_DEFAULTS = {
    "identity": {},
    "mlp": {"features": 128, "width": 256, "depth": 2, "activation": "gelu", "skip": True},
    "conv1d": {"features": 128, "channels": 32, "kernel": 5, "depth": 3, "activation": "gelu", "skip": True},
    "conv2d": {
        "features": 256, "channels": 32, "kernel": 3, "depth": 3, "downsample": 2,
        "activation": "gelu", "skip": True,
    },
}


def resolve_encoder_config(config: dict | None, y_shape: tuple[int, ...]) -> dict:
    config = dict(config or {"type": "mlp"})
    kind = config.pop("type", "mlp")
    if kind not in ENCODER_DEFAULTS:
        raise ValueError(f"unknown encoder type {kind!r}; choose one of {', '.join(ENCODER_DEFAULTS)}")
    cfg = resolve(f"encoder ({kind})", config, ENCODER_DEFAULTS[kind])
    ints = [k for k in ("features", "width", "channels", "kernel", "depth") if k in cfg]
    positive_int(f"encoder ({kind})", cfg, *ints)
    if kind == "mlp":
        positive_int("encoder (mlp)", cfg, "depth", minimum=0)
    if kind == "conv1d" and len(y_shape) != 2:
        raise ValueError(f"encoder 'conv1d' needs 1D observations (T, P); this problem's are {y_shape}")
    if kind == "conv2d":
        if len(y_shape) != 3:
            raise ValueError(f"encoder 'conv2d' needs image observations (T, H, W); this problem's are {y_shape}")
        positive_int("encoder (conv2d)", cfg, "downsample", minimum=0)
        if cfg["downsample"] > cfg["depth"]:
            raise ValueError("encoder (conv2d): `downsample` must be <= `depth`")
    if "kernel" in cfg and cfg["kernel"] % 2 == 0:
        raise ValueError(f"encoder ({kind}): `kernel` must be odd (same-size periodic padding), got {cfg['kernel']}")
    if "activation" in cfg:
        activation(cfg["activation"])
    return {"type": kind, **cfg}


def build_encoder(cfg: dict, y_shape: tuple[int, ...], key) -> AbstractEncoder:
    """The encoder described by a resolved config, for observations of shape ``y_shape``."""
    kind = cfg["type"]
    n_in = 2 * math.prod(y_shape)
    if kind == "identity":
        return IdentityEncoder(out_dim=n_in)
    k_net, k_skip, k_read = jax.random.split(key, 3)
    f = cfg["features"]
    skip = eqx.nn.Linear(n_in, f, key=k_skip) if cfg["skip"] else None
    if kind == "mlp":
        return MLPEncoder(net=mlp(n_in, f, cfg["width"], cfg["depth"], cfg["activation"], k_net), skip=skip, out_dim=f)
    T = y_shape[0]
    if kind == "conv1d":
        convs = _conv_stack(eqx.nn.Conv1d, 2 * T, cfg["channels"], cfg["kernel"], cfg["depth"], [1] * cfg["depth"], k_net)
        readout = eqx.nn.Linear(cfg["channels"] * y_shape[1], f, key=k_read)
        return PeriodicConv1DEncoder(convs=convs, readout=readout, skip=skip, act=cfg["activation"], out_dim=f)
    strides = [1] * (cfg["depth"] - cfg["downsample"]) + [2] * cfg["downsample"]
    convs = _conv_stack(eqx.nn.Conv2d, 2 * T, cfg["channels"], cfg["kernel"], cfg["depth"], strides, k_net)
    h, w = y_shape[1], y_shape[2]  # odd kernel, padding k//2: each layer maps n -> ceil(n / stride)
    for s in strides:
        h, w = -(-h // s), -(-w // s)
    readout = eqx.nn.Linear(cfg["channels"] * h * w, f, key=k_read)
    return Conv2DEncoder(convs=convs, readout=readout, skip=skip, act=cfg["activation"], out_dim=f)
