"""Small building blocks shared by the encoders and heads, and config resolution."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import paramax

ACTIVATIONS = {"gelu": jax.nn.gelu, "silu": jax.nn.silu, "relu": jax.nn.relu, "tanh": jnp.tanh}
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def resolve(section: str, config: dict | None, defaults: dict) -> dict:
    """``defaults`` updated with ``config``; an unknown key is an error naming the section."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(
            f"{section} config has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(defaults))}"
        )
    out = {**defaults, **config}
    for k, v in out.items():
        if isinstance(v, tuple):
            out[k] = list(v)
    return out


def positive_int(section: str, cfg: dict, *names: str, minimum: int = 1) -> None:
    for name in names:
        v = cfg[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{section} config: `{name}` must be an integer >= {minimum}, got {v!r}")


def _identity(x):
    return x


def mlp(in_size: int, out_size: int, width: int, depth: int, act: str, key, final_act: bool = False) -> eqx.nn.MLP:
    """An MLP with ``depth`` hidden layers of ``width`` (``depth=0``: one linear layer)."""
    a = activation(act)
    return eqx.nn.MLP(in_size, out_size, width, depth, activation=a, final_activation=a if final_act else _identity, key=key)


def zero_linear(layer: eqx.nn.Linear, scale: float = 0.0) -> eqx.nn.Linear:
    """The same layer with its weights scaled by ``scale`` (0: zero output) and zero bias."""
    return eqx.tree_at(lambda l: (l.weight, l.bias), layer, (layer.weight * scale, jnp.zeros_like(layer.bias)))


def zero_mlp_output(net: eqx.nn.MLP, scale: float = 0.0) -> eqx.nn.MLP:
    return eqx.tree_at(lambda m: m.layers[-1], net, zero_linear(net.layers[-1], scale))


def cast_floats(tree, dtype):
    """Every floating-point array leaf of ``tree`` cast to ``dtype`` (others untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def is_non_trainable(leaf) -> bool:
    return isinstance(leaf, paramax.NonTrainable)


def trainable_spec(model):
    """A filter spec: True on the trainable floating-point leaves of ``model`` (the
    encoder and head), False on the standardisation statistics and on flowjax's
    ``NonTrainable`` parameters (which weight decay must not touch either)."""
    spec = jax.tree.map(
        lambda leaf: (not is_non_trainable(leaf)) and eqx.is_inexact_array(leaf), model, is_leaf=is_non_trainable
    )
    return eqx.tree_at(lambda m: m.standardizer, spec, replace=jax.tree.map(lambda _: False, model.standardizer))
