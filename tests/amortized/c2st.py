"""Classifier two-sample test (C2ST) for amortized posteriors.

Held-out accuracy of a small MLP classifier (2 hidden layers of 64 GELU units, Adam,
binary cross-entropy) trained to tell draws of q(x | y) from draws of the exact
posterior p(x | y), pooled over many observations y. Each draw is described by

- z = Cᵀ (x − μ(y)): the draw whitened by the *exact* posterior (precision Λ = C Cᵀ,
  mean μ), so exact draws are N(0, I) for every y;
- the exact posterior mean μ(y) and the mask of y: the conditioning, so errors of q
  that depend on y (or on which values are missing) are detectable.

Balanced classes; 70% of the pairs (y, draws) train the classifier, 30% — whole
observations, never seen in training — measure the accuracy. 0.5 means
indistinguishable.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


def whiten_with_exact(exact, x, y, mask):
    """(B, S, n) draws whitened by the exact posterior of each event, and (B, n) means."""
    def one(xx, yy, mm):
        mean, chol = exact._one(yy, mm)
        return (xx.reshape(xx.shape[0], -1) - mean) @ chol, mean

    return jax.vmap(one)(x, y, mask)


def features(exact, draws, y, mask, scale):
    z, mean = whiten_with_exact(exact, draws, y, mask)
    B, S, n = z.shape
    cond = jnp.concatenate([mean / scale, mask.reshape(B, -1).astype(z.dtype)], axis=1)
    return jnp.concatenate([z, jnp.broadcast_to(cond[:, None, :], (B, S, cond.shape[1]))], axis=2)


def classifier_accuracy(fa, fb, seed: int = 0, epochs: int = 40, width: int = 64) -> float:
    """Held-out accuracy of an MLP telling ``fa`` from ``fb`` (each (B, S, d) features of S
    draws for B observations); the split is by observation."""
    fa, fb = np.asarray(fa, np.float32), np.asarray(fb, np.float32)
    B = fa.shape[0]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(B)
    n_tr = int(0.7 * B)
    tr, te = perm[:n_tr], perm[n_tr:]

    def stack(idx):
        a, b = fa[idx].reshape(-1, fa.shape[-1]), fb[idx].reshape(-1, fb.shape[-1])
        return np.concatenate([a, b]), np.concatenate([np.zeros(len(a)), np.ones(len(b))]).astype(np.float32)

    xtr, ytr = stack(tr)
    xte, yte = stack(te)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    key = jax.random.key(seed)
    net = eqx.nn.MLP(xtr.shape[1], 1, width, 2, activation=jax.nn.gelu, key=key)
    net = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, net)
    opt = optax.adam(1e-3)
    state = opt.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(net, state, xb, yb):
        def loss(n):
            logits = jax.vmap(n)(xb)[:, 0]
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, yb))

        g = eqx.filter_grad(loss)(net)
        upd, state = opt.update(g, state)
        return eqx.apply_updates(net, upd), state

    bs = 256
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        for i in range(0, len(order) - bs + 1, bs):
            sel = order[i : i + bs]
            net, state = step(net, state, xtr[sel], ytr[sel])
    logits = np.asarray(eqx.filter_jit(jax.vmap(net))(xte))[:, 0]
    return float(np.mean((logits > 0) == (yte > 0.5)))


def c2st(exact, q_draws, y, mask, key, scale, seed: int = 0) -> float:
    """C2ST accuracy of ``q_draws`` (B, S, *state) against as many exact draws."""
    S = q_draws.shape[1]
    p_draws = exact.sample(y, mask, key, S)
    return classifier_accuracy(
        features(exact, q_draws, y, mask, scale), features(exact, p_draws, y, mask, scale), seed=seed
    )
