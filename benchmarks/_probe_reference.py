"""Probe: cost and quality of the MCMC reference posterior on lorenz96 (not part of
``make bench``).

Run: .venv/bin/python benchmarks/_probe_reference.py [--events 200] [--seed 0]
         [--warmup W] [--samples S] [--steps L]

Simulates the events, solves 4DVar and the Laplace posteriors (timed apart), then runs
:func:`mcmc_reference` twice with different keys: the first call's time minus the second's
is the compilation. Prints wall and process-CPU seconds (the machine may be shared),
ESS / R̂ / acceptance quantiles, the mixed fraction, and how far the Laplace posterior is
from the exact one: z = max_i |mean_mcmc,i − x*_i| / std_mcmc,i per event and the
ratio std_laplace / std_mcmc over all components.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import vardax_core  # noqa: F401  (float64)
from vardax_core.oracle import ReferenceConfig, StrongFourDVar, laplace_posterior, mcmc_reference
from vardax_core.problems import get_problem


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t, time.process_time() - c


def quantiles(a) -> str:
    a = np.asarray(a, dtype=float).ravel()
    qs = np.percentile(a, [0, 5, 50, 95, 100])
    return "min {:.3f}  p5 {:.3f}  median {:.3f}  p95 {:.3f}  max {:.3f}".format(*qs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="leapfrog steps per transition")
    args = ap.parse_args()
    changes = {k: v for k, v in (("n_warmup", args.warmup), ("n_samples", args.samples),
                                 ("num_integration_steps", args.steps)) if v is not None}
    cfg = ReferenceConfig().replace(**changes)

    p = get_problem("lorenz96")
    _, y, mask = p.simulate(jax.random.key(args.seed), args.events)

    def oracle():
        res = StrongFourDVar().solve(p, y, mask)
        return laplace_posterior(p, res.x, y, mask, method="dense")

    oracle()  # compile
    lap, w, c = timed(oracle)
    print(f"{args.events} lorenz96 events, {cfg}")
    print(f"4DVar + Laplace (compiled): {w:.1f} s wall, {c:.1f} s CPU")

    ref, w1, c1 = timed(lambda: mcmc_reference(p, y, mask, jax.random.key(1), config=cfg, laplace=lap))
    ref2, w2, c2 = timed(lambda: mcmc_reference(p, y, mask, jax.random.key(2), config=cfg, laplace=lap))
    print(f"MCMC first call (compile + run): {w1:.1f} s wall, {c1:.1f} s CPU")
    print(f"MCMC second call (run):          {w2:.1f} s wall, {c2:.1f} s CPU  -> compile ≈ {w1 - w2:.1f} s")

    for name, r in (("run 1", ref), ("run 2", ref2)):
        print(f"\n[{name}] mixed {float(np.mean(r.mixed)):.1%} (unmixed events {r.summary()['unmixed']}), "
              f"divergences {int(np.sum(r.divergences))}")
        print(f"  ESS (min over components):      {quantiles(r.ess)}")
        print(f"  R-hat (max over components):    {quantiles(r.rhat)}; > 1.01 on {float(np.mean(r.rhat > 1.01)):.1%}, "
              f"> 1.02 on {float(np.mean(r.rhat > 1.02)):.1%} of events")
        print(f"  acceptance:                     {quantiles(r.acceptance)}")
        print(f"  step size:                      {quantiles(r.step_size)}")
        print(f"  mcse / std (max over comps):    {quantiles(np.max(np.asarray(r.mcse / r.std), axis=1))}")
        print(f"  Laplace: z = max|mean - x*|/std: {quantiles(r.laplace_shift)}")
        print(f"  Laplace: std_laplace/std (all):  {quantiles(r.laplace_std_ratio)}")
        lo, hi = np.min(r.laplace_std_ratio, 1), np.max(r.laplace_std_ratio, 1)
        print(f"  Laplace: per event min / max ratio: p5 of min {np.percentile(lo, 5):.3f}, "
              f"p95 of max {np.percentile(hi, 95):.3f}")
        print(f"  laplace_ok {float(np.mean(r.laplace_ok)):.1%}")

    # the two runs must agree within Monte-Carlo error where both mixed
    both = np.asarray(ref.mixed & ref2.mixed)
    d = np.abs(np.asarray(ref.mean - ref2.mean)) / np.sqrt(np.asarray(ref.mcse**2 + ref2.mcse**2))
    print(f"\nrun 1 vs run 2 on {both.sum()} events mixed in both: |Δmean| / mcse: {quantiles(d[both])}")
    s = np.abs(np.asarray(ref.std / ref2.std) - 1)
    print(f"  |std1/std2 - 1|: {quantiles(s[both])}")


if __name__ == "__main__":
    main()
