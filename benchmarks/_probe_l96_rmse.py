"""Probe: the lorenz96 heads of tests/amortized (same models, training settings and 10⁴
pairs) scored on held-out events that are *not* the test's (not part of ``make bench``).

Run: .venv/bin/python benchmarks/_probe_l96_rmse.py HEAD [--missing 0.2] [--seeds 0,1] [--key 7]

Prints, per training seed, the posterior-mean RMSE against the truth over the 4DVar
oracle's (StrongFourDVar) on 200 events simulated from ``--key`` (the test uses 2024).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import vardax_core  # noqa: F401,E402
from tests.amortized.conftest import L96_MODELS, L96_TRAIN, L96_TRAIN_BY_HEAD  # noqa: E402
from vardax_core.amortized import build_posterior, fit  # noqa: E402
from vardax_core.data import write_pairs  # noqa: E402
from vardax_core.oracle import StrongFourDVar  # noqa: E402
from vardax_core.problems import get_problem  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("head", choices=sorted(L96_MODELS))
    ap.add_argument("--missing", type=float, default=0.2)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--key", type=int, default=7)
    args = ap.parse_args()
    p = get_problem("lorenz96", missing_fraction=args.missing)
    x, y, mask = p.simulate(jax.random.key(args.key), 200)
    oracle = float(jnp.sqrt(jnp.mean((StrongFourDVar().solve(p, y, mask).x - x) ** 2)))
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/pairs.zarr"
        write_pairs(p, path, 10_000, 0, chunk_size=2500)
        for seed in (int(s) for s in args.seeds.split(",")):
            t = time.perf_counter()
            post = build_posterior(p, L96_MODELS[args.head], jax.random.key(seed))
            cfg = {**L96_TRAIN, **L96_TRAIN_BY_HEAD.get(args.head, {})}
            post, hist = fit(post, path, problem=p, config=cfg, seed=seed, progress=False)
            rmse = float(jnp.sqrt(jnp.mean((post(y, mask) - x) ** 2)))
            print(f"{args.head}, missing {args.missing}, seed {seed}: RMSE / oracle RMSE {rmse / oracle:.3f} "
                  f"(best epoch {hist['best_epoch']}, {time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
