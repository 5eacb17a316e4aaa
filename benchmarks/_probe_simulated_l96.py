"""Probe (issue 17): a lorenz96 head trained on fresh simulated pairs, gated against an
oracle store that holds the MCMC reference.

Run: .venv/bin/python benchmarks/_probe_simulated_l96.py ORACLE_ZARR [--pairs 1000000]
         [--covariance full] [--seed 0]

ORACLE_ZARR: e.g. the oracle store a `make cycle` on configs/lorenz96.yaml wrote under
.vardax/stores/lorenz96-*/oracle-*.zarr. Prints the training time and pairs/s, the
posterior-mean RMSE against the truth next to the reference posterior mean's, and the
three gate statistics (release settings).
"""

import argparse
import time

import jax
import numpy as np

import vardax_core  # noqa: F401
from vardax_core.amortized import build_posterior, fit_simulated
from vardax_core.gates import GateConfig, run_gates
from vardax_core.oracle import open_oracle
from vardax_core.problems import get_problem


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oracle")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--covariance", default="full")
    ap.add_argument("--head", default="gaussian", choices=("gaussian", "flow"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--consistency", type=float, default=0.0, help="Jacobian-consistency weight (0: off)")
    ap.add_argument("--consistency-events", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--save", default=None, help="write the trained head here")
    args = ap.parse_args()
    problem = get_problem("lorenz96")
    ds = open_oracle(args.oracle, problem)
    post = build_posterior(problem, {"encoder": {"type": "mlp", "features": 128, "width": 256},
                                     "head": ({"type": "gaussian", "covariance": args.covariance} if args.head == "gaussian" else
                                              {"type": "flow", "precond_covariance": args.covariance})},
                           jax.random.key(args.seed))
    t = time.perf_counter()
    post, hist = fit_simulated(post, problem, budget={"n_pairs": args.pairs, "epoch_pairs": min(args.pairs, 100_000)},
                               config={"batch_size": args.batch, "learning_rate": args.lr, "patience": 5}, seed=args.seed,
                               progress=False,
                               consistency={"weight": args.consistency, "n_events": args.consistency_events})
    seconds = time.perf_counter() - t
    if args.save:
        from vardax_core.amortized import save_posterior
        save_posterior(args.save, post)
    print(f"trained on {hist['n_train']} fresh pairs in {seconds:.0f} s ({hist['n_train'] / seconds:.0f} pairs/s); "
          f"best pseudo-epoch {hist['best_epoch']} of {len(hist['epochs'])}")
    ok = ds["converged"].values & ds["ref_mixed"].values
    x = ds["x_true"].values[ok]
    est = np.asarray(post(ds["y"].values[ok], ds["mask"].values[ok]))
    rmse = lambda a: float(np.sqrt(np.mean((a - x) ** 2)))  # noqa: E731
    print(f"RMSE vs truth: head {rmse(est):.4f}, reference posterior mean {rmse(ds['ref_mean'].values[ok]):.4f} "
          f"(ratio {rmse(est) / rmse(ds['ref_mean'].values[ok]):.3f}), 4DVar MAP {rmse(ds['mean'].values[ok]):.4f}")
    # the head's own Gaussian-noise identity: Cov_q(x, G(x) | y) W from 4000 of its draws
    from vardax_core.gates._jacobian import compare_jacobians
    yo, mo = ds["y"].values[ok], ds["mask"].values[ok]
    W = np.where(mo, np.asarray(problem.noise.R_inv(np.ones(mo.shape[1:]))), 0.0).reshape(len(yo), -1)
    own = []
    for e in range(len(yo)):
        xs = np.asarray(post.sample(yo[e:e + 1], mo[e:e + 1], jax.random.key(e), 4000))[0]
        g = np.asarray(jax.vmap(problem.window)(xs)).reshape(len(xs), -1)
        own.append(((xs - xs.mean(0)).T @ (g - g.mean(0)) / (len(xs) - 1)) * W[e])
    own = np.stack(own)
    jr = ds["ref_jacobian"].values[ok].reshape(own.shape)
    cmp = compare_jacobians(own, jr, None, ds["ref_jacobian_var"].values[ok].reshape(own.shape))
    print(f"head's own identity Jacobian vs reference: pooled {cmp['pooled']:.3f} (raw {np.median(cmp['raw_ratio']):.3f} "
          f"median, 4000-draw estimate)")
    report, _ = run_gates(post, problem, ds, GateConfig(), jax.random.key(0))
    for r in report.results:
        print(f"{r.name}: {'PASS' if r.passed else 'FAIL'} statistic {r.statistic:.4g} — {r.details.get('summary', '')}")


if __name__ == "__main__":
    main()
