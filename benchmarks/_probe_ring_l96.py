"""Probe (issue 17): a periodic-convolution regressor of the lorenz96 posterior mean on the
ring, trained on fresh pairs, with an optional Stein term for its Jacobian; gated against
the MCMC reference (agreement fraction, adjoint statistic).

Run: .venv/bin/python benchmarks/_probe_ring_l96.py ORACLE_ZARR [--pairs 1024000]
         [--channels 64] [--depth 6] [--kernel 7] [--lr 2e-3] [--stein 0]

Inputs on the 40-point ring, per observation time t: the innovation against the
background trajectory scattered by Hᵀ, the mask scattered by Hᵀ, and the background state
M_t(x_b); ``depth`` circular convolutions of ``kernel`` and ``channels`` (GELU) and a 1×1
read-out give the mean increment x̂ − x_b at every point (and, with ``--stein`` > 0, a
second read-out g ≈ E[G(x₀)|y]). Loss: ‖x̂ − x‖² (+ ‖g − G(x)‖² + λ ‖(∂x̂/∂y) ξ − (x − x̂)
(G(x) − g)ᵀ W ξ‖² with ξ ~ N(0, P), the single-draw Gaussian-noise identity).
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import vardax_core  # noqa: F401
from vardax_core.gates import compare_jacobians
from vardax_core.oracle import open_oracle
from vardax_core.problems import get_problem


class RingNet(eqx.Module):
    convs: list
    out: eqx.nn.Conv1d

    def __init__(self, c_in, channels, depth, kernel, n_out, key):
        ks = jax.random.split(key, depth + 1)
        self.convs, c = [], c_in
        for i in range(depth):
            self.convs.append(eqx.nn.Conv1d(c, channels, kernel, padding=kernel // 2, padding_mode="CIRCULAR", key=ks[i]))
            c = channels
        self.out = eqx.nn.Conv1d(c + c_in, n_out, 1, key=ks[-1])

    def __call__(self, h0):
        h = h0
        for cv in self.convs:
            h = jax.nn.gelu(cv(h))
        return self.out(jnp.concatenate([h, h0], 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oracle")
    ap.add_argument("--pairs", type=int, default=1_024_000)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--kernel", type=int, default=7)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--stein", type=float, default=0.0)
    a = ap.parse_args()
    P = get_problem("lorenz96")
    ds = open_oracle(a.oracle, P)
    xb = P.prior.mean
    traj = P.trajectory(xb)[jnp.asarray(P.obs_steps)]
    gb, sig = P.window(xb), P.noise.std
    Ht = jax.vmap(lambda v: jax.linear_transpose(P.obs_op, xb)(v)[0])
    T = gb.shape[0]

    def inputs(y, mask):
        d = jnp.where(mask, (jnp.where(mask, y, 0.0) - gb) / sig, 0.0)
        return jnp.concatenate([Ht(d), Ht(mask.astype(float)), (traj - traj.mean()) / traj.std()]).astype(jnp.float32)

    net = RingNet(3 * T, a.channels, a.depth, a.kernel, 1 + (T if a.stein > 0 else 0), jax.random.key(0))
    net = jax.tree.map(lambda v: v.astype(jnp.float32) if eqx.is_inexact_array(v) else v, net)

    def both(net, y, mask):
        o = net(inputs(y, mask)).astype(jnp.float64)
        g = gb + jax.vmap(P.obs_op)(o[1:]) if a.stein > 0 else gb
        return xb + o[0], g

    predict = lambda net, y, mask: both(net, y, mask)[0]  # noqa: E731
    B = 256
    opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, a.lr, 200, a.pairs // B, a.lr * 0.01))
    st = opt.init(eqx.filter(net, eqx.is_array))

    @eqx.filter_jit
    def step(net, st, key):
        x, y, m = P.simulate(key, B)
        gt = jax.vmap(P.window)(x)
        xis = jax.random.normal(jax.random.fold_in(key, 9), y.shape) * m

        def loss(n):
            def one(yy, mm, xx, g_true, xi):
                yz = jnp.where(mm, yy, 0.0)
                if a.stein <= 0:
                    return jnp.mean((predict(n, yz, mm) - xx) ** 2)
                (mu, g), (jm, _) = jax.jvp(lambda v: both(n, v, mm), (yz,), (xi,))
                w = jnp.sum(jnp.where(mm, (g_true - jax.lax.stop_gradient(g)) * xi / sig**2, 0.0))
                tgt = jax.lax.stop_gradient(xx - mu) * w
                return jnp.mean((mu - xx) ** 2) + jnp.mean((g - g_true) ** 2) + a.stein * jnp.mean((jm - tgt) ** 2)
            return jnp.mean(jax.vmap(one)(y, m, x, gt, xis))

        v, g = eqx.filter_value_and_grad(loss)(net)
        up, st = opt.update(g, st, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, up), st, v

    t = time.perf_counter()
    key = jax.random.key(1)
    for i in range(a.pairs // B):
        net, st, _ = step(net, st, jax.random.fold_in(key, i))
    sec = time.perf_counter() - t
    ok = ds["converged"].values & ds["ref_mixed"].values
    y, m = jnp.asarray(ds["y"].values[ok]), jnp.asarray(ds["mask"].values[ok])
    ym = jnp.where(m, y, 0.0)
    est = np.asarray(jax.vmap(lambda u, v: predict(net, u, v))(ym, m))
    xt, rm, rs = ds["x_true"].values[ok], ds["ref_mean"].values[ok], ds["ref_std"].values[ok]
    rmse = lambda e: np.sqrt(np.mean((e - xt) ** 2))  # noqa: E731
    J = np.asarray(jax.vmap(jax.jacfwd(lambda u, v: predict(net, u, v)))(ym, m)).reshape(len(y), P.n_state, -1)
    c = compare_jacobians(J, ds["ref_jacobian"].values[ok].reshape(J.shape), None,
                          ds["ref_jacobian_var"].values[ok].reshape(J.shape))
    print(f"{a.pairs} pairs, channels {a.channels}, depth {a.depth}, kernel {a.kernel}, stein {a.stein}: "
          f"{sec:.0f} s ({a.pairs / sec:.0f} pairs/s); RMSE ratio to the reference mean {rmse(est) / rmse(rm):.4f}; "
          f"agreement fraction {np.mean((np.abs(est - rm) / rs).max(1) <= 1):.3f}; adjoint pooled {c['pooled']:.4f} "
          f"(median event {np.median(c['ratio']):.3f}, worst {np.max(c['ratio']):.3f})")


if __name__ == "__main__":
    main()
