"""Conjugate gradients for one symmetric positive-definite operator (vmappable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._control import tree_dot


def cg(matvec, b, *, rtol: float, max_iter, atol: float = 0.0, precondition=None):
    """Solve A x = b from x = 0 by (preconditioned) conjugate gradients.

    ``precondition`` applies M⁻¹ ≈ A⁻¹ (symmetric positive definite; default identity).
    Stops when ‖r‖ ≤ max(rtol ‖b‖, atol) or after ``max_iter`` iterations. A ``lax``
    loop: jittable and vmappable (under vmap, finished systems stay frozen). Returns
    ``(x, iterations, converged)``.
    """
    psolve = precondition if precondition is not None else (lambda r: r)
    tol2 = jnp.maximum(rtol * jnp.sqrt(tree_dot(b, b)), atol) ** 2
    z = psolve(b)

    def cond(c):
        k, r = c[-1], c[1]
        return (tree_dot(r, r) > tol2) & (k < max_iter)

    def body(c):
        x, r, p, rz, k = c
        ap = matvec(p)
        alpha = rz / tree_dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        z = psolve(r)
        rz_new = tree_dot(r, z)
        p = z + (rz_new / rz) * p
        return x, r, p, rz_new, k + 1

    init = (jnp.zeros_like(b), b, z, tree_dot(b, z), jnp.asarray(0))
    x, r, _, _, k = jax.lax.while_loop(cond, body, init)
    return x, k, tree_dot(r, r) <= tol2
