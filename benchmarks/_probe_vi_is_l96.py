"""Probe (issue 17): can a per-event physics computation that stops short of exact
sampling give the adjoint gate's Jacobian? Two candidates, each against the stored MCMC
posterior-mean Jacobian with the gate's statistic (pooled debiased relative Frobenius
error; the gate asks < 0.05, every event < 0.25):

- ``vi``: the Gaussian variational fixed point q = N(m, S) of KL(q ‖ p) per event —
  natural-gradient iterations m ← m + S E_q[∇ log p], S⁻¹ ← E_q[−∇² log p] from the
  oracle's Laplace posterior, ``K`` fixed antithetic draws — and its Jacobian
  S E_q[G'(x)]ᵀ R⁻¹ (Stein's identity on q); also the Gauss–Newton gain with the same
  E_q[G'] for comparison. Events whose iteration did not stay finite are reported and
  left out.
- ``is``: self-normalised importance sampling with K draws from the oracle's Laplace
  posterior (covariance × 1.2²) as proposal — an amortized proposal corrected by the
  exact likelihood — and the Jacobian of its mean w.r.t. y (draws held fixed), which
  is Cov_w(x, G(x)) R⁻¹ with K-draw Monte-Carlo noise.

Run: .venv/bin/python benchmarks/_probe_vi_is_l96.py ORACLE_ZARR vi [--events 40] [--draws 128] [--iters 15]
     .venv/bin/python benchmarks/_probe_vi_is_l96.py ORACLE_ZARR is [--events 60] [--draws 1000,4000]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401
from vardax_core.gates import compare_jacobians
from vardax_core.oracle import open_oracle
from vardax_core.problems import get_problem


def report(name, J, ds, idx):
    c = compare_jacobians(np.asarray(J).reshape(ds["ref_jacobian"].values[idx].shape),
                          ds["ref_jacobian"].values[idx], None, ds["ref_jacobian_var"].values[idx])
    print(f"{name}: adjoint pooled {c['pooled']:.4f}, median event {np.median(c['ratio']):.3f}, "
          f"95th percentile {np.quantile(c['ratio'], 0.95):.3f}, worst {np.max(c['ratio']):.3f}")


def vi(P, ds, idx, K, iters):
    n = P.n_state
    y, mk = jnp.asarray(ds["y"].values[idx]), jnp.asarray(ds["mask"].values[idx])
    m0, L0 = jnp.asarray(ds["mean"].values[idx]), jnp.asarray(ds["cov_chol"].values[idx])
    z = jax.random.normal(jax.random.key(0), (K // 2, n))
    z = jnp.concatenate([z, -z])
    W = P.noise.R_inv(jnp.ones(P.y_shape))
    B_inv = jnp.linalg.inv(jax.vmap(P.prior.B)(jnp.eye(n)))

    def one(args):
        yy, m, mu0, Lc = args
        ym, Wm = jnp.where(m, yy, 0.0), jnp.where(m, W, 0.0).reshape(-1)
        cost = lambda x: P.cost(x, ym, m)  # noqa: E731

        def step(c, _):
            mu, L = c
            xs = mu + z @ L.T
            g = -jnp.mean(jax.vmap(jax.grad(cost))(xs), 0)
            H = jnp.mean(jax.vmap(jax.hessian(cost))(xs), 0)
            S = jnp.linalg.inv(0.5 * (H + H.T))
            return (mu + S @ g, jnp.linalg.cholesky(S)), None

        (mu, L), _ = jax.lax.scan(step, (mu0, Lc), None, iters)
        S = L @ L.T
        EG = jnp.mean(jax.vmap(jax.jacfwd(lambda s: P.window(s).reshape(-1)))(mu + z @ L.T), 0)
        S_gn = jnp.linalg.inv(B_inv + (EG.T * Wm) @ EG)
        return mu, jnp.sqrt(jnp.diag(S)), (S @ EG.T) * Wm, (S_gn @ EG.T) * Wm

    t = time.perf_counter()
    mu, sd, J, J_gn = (np.asarray(a) for a in jax.block_until_ready(jax.jit(lambda a: jax.lax.map(one, a))(
        (y, mk, m0, L0))))
    ok = np.isfinite(J).reshape(len(idx), -1).all(1) & np.isfinite(mu).all(1)
    print(f"VI fixed points of {len(idx)} events, {K} draws, {iters} iterations: {time.perf_counter() - t:.0f} s; "
          f"finite on {ok.sum()}")
    idx, mu, sd, J, J_gn = idx[ok], mu[ok], sd[ok], J[ok], J_gn[ok]
    report("VI Jacobian S E_q[G']ᵀ R⁻¹", J, ds, idx)
    report("Gauss-Newton gain with E_q[G'] at the VI mean", J_gn, ds, idx)
    rm, rs = ds["ref_mean"].values[idx], ds["ref_std"].values[idx]
    z_vi = (np.abs(mu - rm) / rs).max(1)
    z_map = (np.abs(ds["mean"].values[idx] - rm) / rs).max(1)
    print(f"VI mean: agreement {np.mean(z_vi <= 1):.3f}, median max_i |m − ref|/σ {np.median(z_vi):.3f} "
          f"(MAP: {np.median(z_map):.3f}); VI std / reference std, median {np.median(sd / rs):.3f}")


def importance(P, ds, idx, draws):
    n = P.n_state
    y, mk = jnp.asarray(ds["y"].values[idx]), jnp.asarray(ds["mask"].values[idx])
    mu, L = jnp.asarray(ds["mean"].values[idx]), jnp.asarray(ds["cov_chol"].values[idx])

    def one(args, K):
        yy, m, mu, L, key = args
        z = jax.random.normal(key, (K // 2, n))
        z = jnp.concatenate([z, -z])
        x = mu + 1.2 * z @ L.T
        G, lp = jax.vmap(P.window)(x), jax.vmap(P.prior.log_prob)(x)

        def mean(yv):
            r = jnp.where(m, (yv - G) / P.noise.std, 0.0)
            w = jax.nn.softmax(lp - 0.5 * jnp.sum(r**2, axis=(1, 2)) + 0.5 * jnp.sum(z**2, 1))
            return w @ x, 1.0 / jnp.sum(w**2)

        ym = jnp.where(m, yy, 0.0)
        return jax.jacfwd(lambda v: mean(v)[0])(ym), mean(ym)[1]

    keys = jax.random.split(jax.random.key(0), len(idx))
    for K in draws:
        t = time.perf_counter()
        J, ess = jax.block_until_ready(jax.jit(lambda a, K=K: jax.lax.map(lambda t: one(t, K), a))(
            (y, mk, mu, L, keys)))
        print(f"IS with {K} draws: {time.perf_counter() - t:.0f} s for {len(idx)} events; ESS median "
              f"{np.median(ess):.0f} (min {np.min(ess):.0f})")
        report(f"IS mean Jacobian, {K} draws", J, ds, idx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oracle")
    ap.add_argument("method", choices=["vi", "is"])
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--draws", default=None, help="vi: K (default 128); is: comma-separated K (default 1000,4000)")
    ap.add_argument("--iters", type=int, default=15)
    a = ap.parse_args()
    P = get_problem("lorenz96")
    ds = open_oracle(a.oracle, P)
    idx = np.flatnonzero(ds["converged"].values & ds["ref_mixed"].values)[: a.events]
    if a.method == "vi":
        vi(P, ds, idx, int(a.draws or 128), a.iters)
    else:
        importance(P, ds, idx, [int(k) for k in (a.draws or "1000,4000").split(",")])


if __name__ == "__main__":
    main()
