"""Probe: how precisely the MCMC reference knows ∂E[x₀|y]/∂y, and how far the
implicit-function (MAP) Jacobians are from it, on lorenz96 (not part of ``make bench``).

Run: .venv/bin/python benchmarks/_probe_jacobian.py [--events 200] [--seed 0]

Two reference runs (keys 1 and 2) on the same events. Per event (mixed in both runs),
with J₁, V₁ the first run's Jacobian and its Monte-Carlo variance (entry-wise) and a
candidate A with its own Monte-Carlo variance V_A (0 for a deterministic candidate):

    raw  r   = ‖A − J₁‖_F / ‖J₁‖_F
    debiased = √max(0, ‖A − J₁‖²_F − ΣV₁ − ΣV_A) / √(‖J₁‖²_F − ΣV₁)

(E‖Â − Ĵ₁‖² = ‖A − J‖² + ΣV_A + ΣV₁ for independent unbiased estimates). Candidates:
the second run (the exact posterior mean, estimated independently), 1.2 × the second
run, the exact-Hessian and the Gauss–Newton implicit-function Jacobians at the MAP.
Operator-norm ratios ‖A − J₁‖₂ / ‖J₁‖₂ are printed next to them.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401  (float64)
from vardax_core.oracle import StrongFourDVar, laplace_posterior, mcmc_reference
from vardax_core.problems import get_problem

from _probe_reference import quantiles  # noqa: E402  (benchmarks/ is the script's directory)


def ift_jacobians(p, x_star, y, mask):
    """Dense (exact-Hessian, Gauss–Newton) ∂x*/∂y, each (n, m), for one event."""
    n = x_star.size
    w = jnp.where(mask, p.noise.R_inv(jnp.ones_like(y)), 0.0).reshape(-1)
    g = jax.jacfwd(p.window)(x_star).reshape(-1, n)  # (m, n)
    gtw = g.T * w
    h_exact = jax.hessian(lambda x: p.cost(x, y, mask))(x_star)
    h_gn = jax.hessian(p.background_misfit)(x_star) + gtw @ g
    return jnp.linalg.solve(h_exact, gtw), jnp.linalg.solve(h_gn, gtw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    p = get_problem("lorenz96")
    _, y, mask = p.simulate(jax.random.key(args.seed), args.events)
    x_star = StrongFourDVar().solve(p, y, mask).x
    lap = laplace_posterior(p, x_star, y, mask, method="dense")
    t = time.perf_counter()
    r1 = jax.block_until_ready(mcmc_reference(p, y, mask, jax.random.key(1), laplace=lap))
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    r2 = jax.block_until_ready(mcmc_reference(p, y, mask, jax.random.key(2), laplace=lap))
    t2 = time.perf_counter() - t
    print(f"{args.events} lorenz96 events; reference with Jacobian: first call {t1:.1f} s, second {t2:.1f} s")
    both = np.asarray(r1.mixed & r2.mixed)
    print(f"mixed in both runs: {both.sum()} of {args.events}")
    E = args.events
    J1, V1 = (np.asarray(a).reshape(E, p.n_state, -1) for a in (r1.jacobian, r1.jacobian_var))
    J2, V2 = (np.asarray(a).reshape(E, p.n_state, -1) for a in (r2.jacobian, r2.jacobian_var))
    j_exact, j_gn = (np.asarray(a) for a in jax.jit(jax.vmap(lambda *a: ift_jacobians(p, *a)))(r1.x_map, y, mask))

    sq = lambda a: np.sum(a**2, axis=(1, 2))  # noqa: E731
    norm_ref2 = sq(J1) - np.sum(V1, axis=(1, 2))
    print(f"MC noise of J₁: √ΣV₁ / ‖J₁‖_F: {quantiles(np.sqrt(np.sum(V1, axis=(1, 2)) / sq(J1))[both])}")
    print(f"‖J₁‖²_F debiased > 0 on all events: {bool(np.all(norm_ref2 > 0))}")

    def op(a):
        return np.linalg.norm(a, ord=2, axis=(1, 2))

    for name, A, VA in (("second run (exact)", J2, V2), ("1.2 × second run", 1.2 * J2, 1.44 * V2),
                        ("exact-Hessian IFT", j_exact, 0 * V2), ("Gauss–Newton IFT", j_gn, 0 * V2)):
        raw = np.sqrt(sq(A - J1) / sq(J1))
        deb = np.sqrt(np.maximum(sq(A - J1) - np.sum(V1, axis=(1, 2)) - np.sum(VA, axis=(1, 2)), 0) / norm_ref2)
        opn = op(A - J1) / op(J1)
        num = sq(A - J1) - np.sum(V1, axis=(1, 2)) - np.sum(VA, axis=(1, 2))
        pooled = np.sqrt(max(np.sum(num[both]), 0.0) / np.sum(norm_ref2[both]))
        print(f"\n{name}: pooled debiased Frobenius ratio over events {pooled:.4f}")
        print(f"  raw Frobenius ratio:      {quantiles(raw[both])}")
        print(f"  debiased Frobenius ratio: {quantiles(deb[both])}")
        print(f"  operator-norm ratio:      {quantiles(opn[both])}")


if __name__ == "__main__":
    main()
