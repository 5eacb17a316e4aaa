"""Conjugate gradients for one symmetric positive-definite operator (vmappable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._control import tree_dot


def cg(matvec, b, *, rtol: float, max_iter: int, atol: float = 0.0):
    """Solve A x = b from x = 0 with conjugate gradients.

    Stops when ‖r‖ ≤ max(rtol ‖b‖, atol) or after ``max_iter`` iterations. A ``lax``
    loop: jittable and vmappable (under vmap, finished systems stay frozen). Returns
    ``(x, iterations, converged)``.
    """
    tol2 = jnp.maximum(rtol * jnp.sqrt(tree_dot(b, b)), atol) ** 2
    x = jnp.zeros_like(b)
    rs = tree_dot(b, b)

    def cond(c):
        _, _, _, rs, k = c
        return (rs > tol2) & (k < max_iter)

    def body(c):
        x, r, p, rs, k = c
        ap = matvec(p)
        alpha = rs / tree_dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = tree_dot(r, r)
        p = r + (rs_new / rs) * p
        return x, r, p, rs_new, k + 1

    x, _, _, rs, k = jax.lax.while_loop(cond, body, (x, b, b, rs, jnp.asarray(0)))
    return x, k, rs <= tol2
