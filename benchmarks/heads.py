"""The default lorenz96 head (configs/lorenz96.yaml) against the MCMC reference: accuracy
against the number of fresh training pairs, and its gates over training seeds.

Run: .venv/bin/python benchmarks/heads.py [--pairs 10000,100000,1000000] [--seeds 5]
         [--events 200] [--config lorenz96] [--head NAME] [--quick] [--json PATH]

Held-out events: ``--events`` pairs simulated with the config's held-out seed, solved by
the config's 4DVar oracle with the MCMC reference posterior (the oracle step of the
cycle, written to a temporary store). The head — the config's first head that trains on
fresh simulated pairs (``simulate``), or ``--head`` — is trained with its config (encoder,
head, train settings, consistency penalty) on each budget of ``--pairs`` with seed 0, and
on the config's own budget with seeds 0 … ``--seeds``−1; each trained head goes through
``run_gates`` with the config's gate settings (release defaults). Reported per run: training
time and pairs/s, RMSE against the truth and its ratio to the reference posterior mean's
(target ≤ 1.03), energy-score ratio, the three gate statistics and verdicts.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax

import vardax_core  # noqa: F401
from _common import Num, Record, parse_args, parser
from vardax_core.amortized import build_posterior, fit_simulated
from vardax_core.data import write_pairs
from vardax_core.gates import run_gates
from vardax_core.oracle import open_oracle, solve_to_store

QUICK = {"pairs": "2048", "seeds": 2, "events": 12, "quick": True}


def _load(args):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from flows.config import load_config
    from flows.oracle import build_solver
    from flows.simulate import pairs_path
    from flows.train import model_config

    config = load_config(args.config)
    heads = [h for h in config.heads if h.simulate is not None and args.head in (None, h.name)]
    if not heads:
        raise SystemExit(f"config {config.name!r} has no head training on simulated pairs"
                         + (f" named {args.head!r}" if args.head else ""))
    return config, heads[0], build_solver(config), model_config(heads[0]), pairs_path(config, "heldout")[2]


def main():
    ap = parser(__doc__.splitlines()[0], QUICK)
    ap.add_argument("--pairs", default="10000,100000,1000000")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--config", default="lorenz96")
    ap.add_argument("--head", default=None)
    args = parse_args(ap)
    rec = Record("heads", args)
    config, head, solver, model_cfg, heldout_seed = _load(args)
    problem = config.problem.build()
    gate_cfg = config.gates.settings.core()
    reference = config.oracle.reference_config()
    if args.quick:
        from vardax_core.oracle import ReferenceConfig

        reference = ReferenceConfig(n_warmup=50, n_samples=100, n_draws=40, min_ess=10.0, max_rhat=2.0)
        gate_cfg = gate_cfg.replace(sbc_runs=100, sbc_bins=10, score_draws=8)
    tmp = tempfile.mkdtemp(prefix="vardax-heads-")
    t = time.perf_counter()
    pairs = write_pairs(problem, os.path.join(tmp, "heldout.zarr"), args.events, heldout_seed)
    oracle_path = solve_to_store(problem, pairs, os.path.join(tmp, "oracle.zarr"), solver=solver,
                                 chunk_size=config.oracle.chunk_size, reference=reference,
                                 reference_seed=config.oracle.reference_seed)
    oracle = open_oracle(oracle_path, problem)
    mixed = int((oracle["converged"].values & oracle["ref_mixed"].values).sum())
    rec.line(f"{args.events} held-out events (seed {heldout_seed}), oracle + MCMC reference in "
             f"{time.perf_counter() - t:.0f} s; {mixed} converged and mixed. Head {head.name!r} ({head.type}) of "
             f"config {config.name!r}: encoder {model_cfg['encoder']}, head {model_cfg['head']}, train "
             f"{head.train.settings()}, budget {head.simulate.settings()}"
             + (f", consistency {head.consistency.settings()}" if head.consistency else ""))

    def one(n_pairs: int, seed: int):
        budget = {**head.simulate.settings(), "n_pairs": n_pairs,
                  "epoch_pairs": min(head.simulate.epoch_pairs, n_pairs),
                  "n_standardize": min(head.simulate.n_standardize, n_pairs)}
        post = build_posterior(problem, model_cfg, jax.random.key(seed))
        t0 = time.perf_counter()
        post, hist = fit_simulated(post, problem, budget=budget, config=head.train.core(), seed=seed, progress=False,
                                   consistency=head.consistency.core() if head.consistency else None)
        seconds = time.perf_counter() - t0
        report, _ = run_gates(post, problem, oracle, gate_cfg, jax.random.key(config.gates.seed))
        sc, g = report.meta["scores"], {r.name: r for r in report.results}
        return [Num(n_pairs, ",.0f"), str(seed), Num(seconds, ".0f", " s"), Num(hist["n_train"] / seconds, ",.0f"),
                Num(sc["rmse_ratio"], ".3f"), Num(sc["energy_score_ratio"], ".3f"),
                f"{'pass' if g['posterior_agreement'].passed else 'FAIL'} ({g['posterior_agreement'].statistic:.3f})",
                f"{'pass' if g['adjoint_calibration'].passed else 'FAIL'} ({g['adjoint_calibration'].statistic:.3f})",
                f"{'pass' if g['sbc'].passed else 'FAIL'} ({g['sbc'].statistic:.2g})",
                "yes" if report.passed else "no"], report.passed, sc["rmse_ratio"]

    cols = ["training pairs", "seed", "training time", "pairs/s", "RMSE ratio to reference mean",
            "energy score ratio", "agreement (fraction)", "adjoint (pooled R)", "SBC (Holm p)", "all three pass"]
    budgets = [int(p) for p in args.pairs.split(",")]
    rows = [one(n, 0) for n in budgets]
    rec.table("pairs", "Accuracy against the number of fresh training pairs (seed 0)", cols, [r[0] for r in rows])
    n_cfg = min(head.simulate.n_pairs, max(budgets)) if args.quick else head.simulate.n_pairs
    seeds = [r for r, n in zip(rows, budgets) if n == n_cfg][:1] + [one(n_cfg, s) for s in range(1, args.seeds)]
    rec.table("seeds", f"The config's budget ({n_cfg:,} pairs) over {args.seeds} training seeds", cols,
              [r[0] for r in seeds])
    champions = sum(r[1] for r in seeds)
    rec.target("training seeds whose head passes all three gates (a champion)", Num(champions, ".0f"),
               f">= {max(1, (4 * args.seeds) // 5)} of {args.seeds}", champions >= max(1, (4 * args.seeds) // 5))
    worst = max(r[2] for r in seeds)
    rec.target("RMSE ratio to the reference posterior mean (worst seed)", Num(worst, ".3f"), "<= 1.03", worst <= 1.03)
    rec.save()


if __name__ == "__main__":
    main()
