"""Symmetry augmentation: random cyclic shifts of ring problems.

A problem on a ring whose prior, dynamics, observation operator and noise all commute
with a cyclic shift of the state by s = n / P points (P observed points, observed
every s-th point) has a posterior with the same symmetry: shifting x by s·k and the
observation positions by k maps training pairs to equally likely training pairs.
Training on randomly shifted pairs then gives the model P times as many distinct pairs
for the same simulation budget. The symmetry is verified numerically before use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..problems import Problem


def ring_shift_stride(problem: Problem, rtol: float = 1e-9) -> int:
    """The state shift s that the observation shift by one position corresponds to,
    after checking that ``problem`` is invariant under it; ``ValueError`` otherwise."""
    if len(problem.state_shape) != 1 or len(problem.obs_shape) != 1:
        raise ValueError(
            f"ring-shift augmentation needs 1D states and observations; problem {problem.name!r} has "
            f"state {problem.state_shape} and observations {problem.obs_shape}"
        )
    n, P = problem.state_shape[0], problem.obs_shape[0]
    if n % P:
        raise ValueError(f"ring-shift augmentation: {P} observed points do not divide the ring of {n}")
    s = n // P
    k1, k2 = jax.random.split(jax.random.key(12345))
    x = problem.prior.sample(k1)
    v = jax.random.normal(k2, problem.state_shape, dtype=x.dtype)

    def close(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return np.allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(b)))))

    checks = {
        "prior mean": close(jnp.roll(problem.prior.mean, s), problem.prior.mean),
        "prior covariance": close(problem.prior.B(jnp.roll(v, s)), jnp.roll(problem.prior.B(v), s)),
        "forward model": close(problem.forward.rollout(jnp.roll(x, s), 1)[-1], jnp.roll(problem.forward.rollout(x, 1)[-1], s)),
        "observation operator": close(problem.obs_op(jnp.roll(x, s)), jnp.roll(problem.obs_op(x), 1)),
        "noise": close(jnp.roll(jnp.broadcast_to(problem.noise.std, problem.obs_shape), 1), jnp.broadcast_to(problem.noise.std, problem.obs_shape)),
        "observed positions": bool(np.all(np.roll(np.asarray(problem.obs_op.base_mask), 1) == np.asarray(problem.obs_op.base_mask))),
    }
    broken = [k for k, ok in checks.items() if not ok]
    if broken:
        raise ValueError(
            f"ring-shift augmentation: problem {problem.name!r} is not invariant under a cyclic shift by "
            f"{s} points ({', '.join(broken)} differ); train without augmentation"
        )
    return s


def shift_events(batch: dict, shifts: np.ndarray, stride: int) -> dict:
    """Events shifted cyclically: observations by ``shifts[i]`` positions (last axis),
    states by ``stride * shifts[i]`` points."""
    x, y, mask = batch["x"], batch["y"], batch["mask"]
    n, P = x.shape[-1], y.shape[-1]
    ix = (np.arange(n)[None, :] - stride * shifts[:, None]) % n
    iy = (np.arange(P)[None, :] - shifts[:, None]) % P
    return {
        **batch,
        "x": np.take_along_axis(x, ix, axis=1),
        "y": np.take_along_axis(y, iy[:, None, :], axis=2),
        "mask": np.take_along_axis(mask, iy[:, None, :], axis=2),
    }
