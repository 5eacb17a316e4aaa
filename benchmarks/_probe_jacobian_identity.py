"""Probe (issue 17): how far simple Jacobians are from the exact posterior-mean Jacobian on
lorenz96, with the adjoint gate's statistic (pooled debiased relative Frobenius error).

Run: .venv/bin/python benchmarks/_probe_jacobian_identity.py ORACLE_ZARR [--events 40]

ORACLE_ZARR: an oracle store with the MCMC reference (a `make cycle` on configs/lorenz96.yaml
writes one under .vardax/stores/lorenz96-*/oracle-*.zarr). Prints, against the stored
reference Jacobians: the linearised gain at the prior mean K₀, the mean of the reference
Jacobians over events (a constant map), the Gauss–Newton gain at the 4DVar MAP and at the
truth; then, on the first ``--events`` mixed events, a long MCMC run (4 chains × 5000
draws) and the Gaussian-noise identity evaluated on the moment-matched Gaussian
N(mean, cov) of its draws (Stein: Σ E[G'(x)]ᵀ W) against that run's own Jacobian.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401
from vardax_core.gates import compare_jacobians
from vardax_core.oracle import ReferenceConfig, mcmc_reference, open_oracle
from vardax_core.problems import get_problem


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oracle")
    ap.add_argument("--events", type=int, default=40)
    args = ap.parse_args()
    P = get_problem("lorenz96")
    ds = open_oracle(args.oracle, P)
    ok = ds["ref_mixed"].values & ds["converged"].values
    n = P.n_state
    J = ds["ref_jacobian"].values[ok].reshape(ok.sum(), n, -1)
    V = ds["ref_jacobian_var"].values[ok].reshape(J.shape)
    B = np.asarray(jax.vmap(P.prior.B)(jnp.eye(n)))
    W = np.asarray(P.noise.R_inv(jnp.ones(P.y_shape))).reshape(-1)

    def gn(x):
        G = jax.jacfwd(lambda s: P.window(s).reshape(-1))(x)
        return jnp.linalg.solve(jnp.linalg.inv(B) + (G.T * W) @ G, G.T * W)

    def show(name, A):
        c = compare_jacobians(np.broadcast_to(A, J.shape), J, None, V)
        print(f"{name}: pooled {c['pooled']:.3f}, median event {np.median(c['ratio']):.3f}")

    show("linearised gain K0 at the prior mean", np.asarray(gn(P.prior.mean)))
    show("mean of the reference Jacobians (one constant map)", J.mean(0))
    show("Gauss-Newton gain at the 4DVar MAP", np.asarray(jax.vmap(gn)(jnp.asarray(ds["mean"].values[ok]))))
    show("Gauss-Newton gain at the truth", np.asarray(jax.vmap(gn)(jnp.asarray(ds["x_true"].values[ok]))))

    E = args.events
    idx = np.flatnonzero(ok)[:E]
    y, m = jnp.asarray(ds["y"].values[idx]), jnp.asarray(ds["mask"].values[idx])
    cfg = ReferenceConfig(n_samples=5000, n_draws=20000)
    ref = mcmc_reference(P, y, m, jax.random.key(5), config=cfg)
    D = np.asarray(ref.draws).reshape(E, -1, n)
    J_ref, V_ref = np.asarray(ref.jacobian).reshape(E, n, -1), np.asarray(ref.jacobian_var).reshape(E, n, -1)

    @jax.jit
    def stein(mu, S, mk, key):
        z = jax.random.normal(key, (2000, n))
        x = mu + jnp.concatenate([z, -z]) @ jnp.linalg.cholesky(S).T
        Gp = jax.vmap(jax.jacfwd(lambda s: P.window(s).reshape(-1)))(x).mean(0)
        return (S @ Gp.T) * jnp.where(mk.reshape(-1), W, 0.0)

    Jg = np.stack([np.asarray(stein(D[e].mean(0), np.cov(D[e].T), m[e], jax.random.key(e))) for e in range(E)])
    c = compare_jacobians(Jg, J_ref, None, V_ref)
    raw = np.sqrt(np.sum((Jg - J_ref) ** 2) / np.sum(J_ref ** 2))
    noise = np.sqrt(V_ref.sum() / np.sum(J_ref ** 2))
    print(f"moment-matched Gaussian (Stein) on {E} events, {D.shape[1]} draws each: pooled {c['pooled']:.3f} "
          f"(raw {raw:.3f} against a Monte-Carlo floor of {noise:.3f}); worst event {np.max(c['ratio']):.3f}")


if __name__ == "__main__":
    main()
