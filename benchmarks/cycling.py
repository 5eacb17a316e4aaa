"""Cycled data assimilation on twins of published Lorenz-96 set-ups: our time-averaged
analysis RMSE next to the published figure for every method run, with spread/RMSE, the
truth's 90 % coverage and the wall time per analysis.

Run: .venv/bin/python benchmarks/cycling.py [--twins NAME,...] [--cycles K] [--tune-cycles K]
         [--methods LABEL,...] [--background-std S] [--head-pairs N] [--timing-calls N] [--batch-events B]
         [--dapper-python PATH] [--quick] [--json PATH]

For each twin of ``vardax_core.cycle.PUBLISHED_TWINS`` (``--cycles`` shortens every run):
- the climatology is a free run of 20,000 steps (mean and covariance C after 2,000 steps
  of spin-up); the truths start on that run: the *tuning* truth at step 5,000, the
  *evaluation* truth at step 15,000, each with its own observation noise — a method's
  setting is tuned on the tuning truth only, then the evaluation truth is run once;
- methods: climatology (mean and variance of C); optimal interpolation (B = C);
  3D-Var (B = α C, α tuned over ``ALPHAS``); the EnKF (square-root ETKF, N = 40,
  inflation tuned over ``INFLATIONS``); the 4DVar oracle in the loop (``FourDVar``,
  L-BFGS to ‖∇J‖ ≤ 1e-8, window of L cycles slid by one cycle, B = α C with α tuned over
  ``ALPHAS_4DVAR``) for the windows the published table lists (one cycle elsewhere); the
  iEnKS (``IterativeEnsembleKalmanSmoother``, square-root form, N = 20, Gauss–Newton to
  ‖Δw‖² < 1e-5 N or 10 iterations) on the twins with a published iEnKS figure, its
  inflation tuned over ``IENKS_INFLATIONS`` and — where the published label names no
  window — its window over ``IENKS_LAGS``;
- the RMSE is the mean over the evaluation cycles after spin-up of sqrt(mean_i (x̂_i −
  x_i)²), as in the published tables; spread/RMSE uses the method's own variance;
  coverage is the fraction of (cycle, component) whose truth lies in the method's
  central 90 % interval;
- time per analysis: a warm (compiled) run of the tuning truth at the chosen setting,
  its wall time over its cycles (forecast included).
A published method not run (``--methods``) is listed with its published figure alone.

DAPPER side by side (``--dapper-python``; ``make bench`` builds the environment with
``make dapper-venv``, DAPPER pinned in ``benchmarks/dapper-requirements.txt``, never a
dependency of vardax_core), by ``benchmarks/_dapper_baseline.py``, from an initial
ensemble drawn around the same background, its RMSE computed with the same formula as
ours: on the twin with a published EnKF figure, DAPPER's own square-root EnKF (N = 40,
rot = True, its inflation tuned on the same tuning truth over the same grid) runs our
tuning and evaluation truths and observations; on the twins with a published iEnKS figure,
DAPPER's iEnKS (N = 20, the window ours uses, its adaptive finite-size inflation xN = 2 —
the configuration DAPPER lists for the published figure) runs our evaluation truth and
observations.

The amortized head in the loop (on ``l96_full_dt005``): the background-conditioned
problem ``lorenz96_cycling`` (observation rows: the background at the window start with
σ_b = ``--background-std``, the observations one cycle later) is solved in the same loop
by the 4DVar oracle (``OracleAnalyser``: L-BFGS MAP and Laplace covariance) and by a
full-covariance Gaussian head (``HEAD``: the one of configs/lorenz96-cycling.yaml) trained
on ``--head-pairs`` fresh pairs of that problem
(``AmortizedPosterior.as_analysis_step``). Both run the evaluation truth; the table gives
RMSE, spread/RMSE and coverage, and the time of one analysis alone — the analyser of one
event, jitted, median of warm calls (``--timing-calls``) — and per cycle in the loop
(forecast and the tangent-linear spread included); as a lever on the speed-up, also per
analysis when ``--batch-events`` independent events go through one vmapped call (not how a
cycle uses it: its analyses are sequential). Next to the speed-up target, its
ceiling on this machine: the oracle's time over the least time any head call can take,
the larger of the head's flops (XLA cost analysis) at the machine's peak rate
(``_common.peak_flops``, an upper bound) and one jitted call's dispatch.
"""

from __future__ import annotations

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax
import jax.numpy as jnp
import numpy as np

import vardax_core  # noqa: F401  (float64)
from _common import Num, Record, machine, median_call_seconds, parse_args, parser, peak_flops, ratio
from vardax_core.cycle import (
    PUBLISHED_TWINS, Climatology, EnsembleKalmanFilter, FourDVar, IterativeEnsembleKalmanSmoother, OptimalInterpolation,
    get_twin, lorenz96_climatology, run_cycle,
)

ALPHAS = (0.01, 0.02, 0.04, 0.1, 0.3)
ALPHAS_4DVAR = (0.01, 0.02, 0.05)
INFLATIONS = (1.01, 1.02, 1.04, 1.08, 1.15)
N_MEMBERS = 40
#: the iEnKS: N = 20 (as published), its inflation tuned over IENKS_INFLATIONS; a window the
#: published label names is kept, else the window is tuned over IENKS_LAGS too
IENKS_MEMBERS = 20
IENKS_INFLATIONS = (1.01, 1.02, 1.03, 1.04, 1.06, 1.08)
IENKS_LAGS = (1, 2, 4, 8)
TUNE_START, EVAL_START = 5000, 15000
#: the head of configs/lorenz96-cycling.yaml: periodic convolutions over the ring, full
#: Gaussian in moment form
HEAD = {"encoder": {"type": "conv1d", "features": 128},
        "head": {"type": "gaussian", "covariance": "full", "obs_precision": False}}


def _window_in(label: str) -> int | None:
    """The window a published label names ("4D-Var, window 4 cycles", "iEnKS (N = 20,
    window 4)"), or None."""
    m = re.search(r"window (\d+)", label)
    return int(m.group(1)) if m else None


def _windows(twin) -> list[int]:
    lags = sorted({_window_in(k) for k in twin.published if k.startswith("4D-Var, window")})
    return lags or [1]


def _ienks_label(twin) -> str | None:
    """The published iEnKS entry of ``twin`` (its key), if any."""
    return next((k for k in twin.published if k.startswith("iEnKS")), None)


def _ienks_lags(label: str) -> tuple[int, ...]:
    """The window the published label names ("iEnKS (N = 20, window 4)"), else ``IENKS_LAGS``."""
    lag = _window_in(label)
    return IENKS_LAGS if lag is None else (lag,)


def candidates(twin, C, mu):
    """(label, published key or None, [(setting text, step)…]) per method."""
    Cj = jnp.asarray(C)
    out = [
        ("climatology", "climatology", [("", Climatology(jnp.asarray(mu), jnp.diagonal(Cj)))]),
        ("optimal interpolation", "optimal interpolation", [("B = C", OptimalInterpolation(Cj))]),
        ("3D-Var", "3D-Var", [(f"B = {a} C", OptimalInterpolation(a * Cj)) for a in ALPHAS]),
        ("EnKF", "EnKF", [(f"N = {N_MEMBERS}, inflation {i}", EnsembleKalmanFilter(N_MEMBERS, inflation=i)) for i in INFLATIONS]),
    ]
    for lag in _windows(twin):
        label = f"4D-Var, window {lag} cycle{'s' if lag > 1 else ''}"
        out.append((label, label if label in twin.published else None,
                    [(f"B = {a} C", FourDVar(a * Cj, lag=lag)) for a in ALPHAS_4DVAR]))
    label = _ienks_label(twin)
    if label is not None:
        out.append((label, label, [
            (f"N = {IENKS_MEMBERS}, window {lag}, inflation {i}",
             IterativeEnsembleKalmanSmoother(IENKS_MEMBERS, lag=lag, inflation=i))
            for lag in _ienks_lags(label) for i in IENKS_INFLATIONS]))
    return out


def dapper_baseline(python: str, method: str, settings, data, background, twin, setup, n_members: int) -> dict:
    """DAPPER's ``method`` ("EnKF": one run per inflation in ``settings``; "iEnKS": one run
    per window) by ``benchmarks/_dapper_baseline.py``, run by ``python``, the interpreter of
    the environment holding DAPPER, on our truth and observations ``data`` (as
    :meth:`TwinSetup.simulate` returns them); its JSON printout. DAPPER's statistics need
    the truth at every model step: the steps between two cycles are our model's from the
    cycle's truth."""
    import json
    import subprocess
    import tempfile

    truth, y, mask = data
    if not bool(jnp.all(mask)):
        raise ValueError("dapper_baseline: the twin has missing observations; DAPPER's baselines take complete ones")
    s = setup.steps_per_cycle
    steps = jax.vmap(lambda x: setup.model.rollout(x, s)[1:])(truth[:-1]).reshape(-1, setup.n_state)
    steps = jnp.concatenate([truth[:1], steps]).at[s::s].set(truth[1:])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "twin.npz")
        # DAPPER's initial ensemble: N(background, σ²) with σ our ensembles' initial spread
        np.savez(path, truth=np.asarray(steps), y=np.asarray(y), obs_inds=np.arange(0, setup.n_state, twin.obs_stride),
                 steps_per_cycle=s, background=np.asarray(background),
                 background_std=float(EnsembleKalmanFilter(n_members).initial_std), dt=float(setup.model.dt),
                 noise_std=twin.noise_std, n_members=n_members, method=method, settings=np.asarray(settings, float),
                 burn_in=setup.burn_in)
        proc = subprocess.run([python, os.path.join(os.path.dirname(__file__), "_dapper_baseline.py"), path],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"DAPPER's {method} ({python}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _dapper_not_run(method: str) -> list:
    return [f"{method}, DAPPER (same truth and observations)",
            "not run: no DAPPER interpreter (--dapper-python; `make bench` builds one)"] + [None] * 6


def _dapper_cells(ev: dict, method: str, setting: str, pub: float) -> list:
    """A table row of DAPPER's one evaluation run ``ev`` (its JSON printout)."""
    d = ev["runs"][0]
    return [f"{method}, DAPPER {ev['dapper']} (same truth and observations)", setting, Num(d["rmse_a"], ".3f"),
            Num(pub, ".3g"), Num(d["rmse_a"] / pub, ".2f"), Num(d["spread_ratio"], ".2f"), Num(d["coverage_90"], ".2f"),
            Num(d["per_analysis_s"] * 1e3, ".3g", " ms")]


def dapper_row(args, twin, setup, tune_setup, tune, evaluation, background, ours: dict, rec: Record) -> list:
    """The table row of DAPPER's EnKF on the same tuning and evaluation truths as ours (its
    inflation tuned on the tuning truth over ``INFLATIONS``, like ours), or a row saying
    why it did not run."""
    if not args.dapper_python:
        return _dapper_not_run("EnKF")
    pub = twin.published["EnKF"]
    tuned = dapper_baseline(args.dapper_python, "EnKF", INFLATIONS, tune, background(tune[0]), twin, tune_setup,
                            N_MEMBERS)
    best = min(tuned["runs"], key=lambda r: r["rmse_a"] if np.isfinite(r["rmse_a"]) else np.inf)
    ev = dapper_baseline(args.dapper_python, "EnKF", [best["setting"]], evaluation, background(evaluation[0]), twin,
                         setup, N_MEMBERS)
    d = ev["runs"][0]
    rec.line(f"{twin.name}: DAPPER {ev['dapper']} EnKF('Sqrt', N = {N_MEMBERS}, rot = True, inflation "
             f"{best['setting']}) on our evaluation truth and observations: RMSE {d['rmse_a']:.4f}; ours "
             f"{ours['rmse_a']:.4f} (ours / DAPPER {ours['rmse_a'] / d['rmse_a']:.3f}); its time per analysis is "
             f"NumPy's, one analysis at a time with Python overhead")
    rec.data(f"dapper_{twin.name}", {"tuning": tuned, "evaluation": ev})
    return _dapper_cells(ev, "EnKF", f"Sqrt, N = {N_MEMBERS}, rot, inflation {best['setting']}", pub)


def dapper_ienks_row(args, twin, setup, evaluation, background, lag: int, ours: dict, rec: Record) -> list:
    """The table row of DAPPER's iEnKS (``iEnKS('Sqrt', N = 20, Lag, xN = 2)``, the
    configuration DAPPER lists for the published figure; its finite-size inflation is
    adaptive, so nothing is tuned) with our window on the same evaluation truth and
    observations, or a row saying why it did not run."""
    if not args.dapper_python:
        return _dapper_not_run("iEnKS")
    pub = twin.published[_ienks_label(twin)]
    ev = dapper_baseline(args.dapper_python, "iEnKS", [lag], evaluation, background(evaluation[0]), twin, setup,
                         IENKS_MEMBERS)
    d = ev["runs"][0]
    rec.line(f"{twin.name}: DAPPER {ev['dapper']} iEnKS('Sqrt', N = {IENKS_MEMBERS}, Lag = {lag}, xN = 2) on our "
             f"evaluation truth and observations: RMSE {d['rmse_a']:.4f}; ours {ours['rmse_a']:.4f} (ours / DAPPER "
             f"{ours['rmse_a'] / d['rmse_a']:.3f})")
    rec.data(f"dapper_ienks_{twin.name}", ev)
    return _dapper_cells(ev, "iEnKS", f"Sqrt, N = {IENKS_MEMBERS}, window {lag}, finite-size inflation (xN = 2)", pub)


def _xla_flops(fn, args) -> float:
    """XLA's cost-analysis flop count of the jitted ``fn`` at ``args`` (a while loop's
    body is counted once, whatever its trip count)."""
    cost = fn.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def amortized_in_the_loop(rec: Record, args, free) -> None:
    from vardax_core.amortized import build_posterior, fit_simulated
    from vardax_core.cycle import BackgroundConditionedStep, OracleAnalyser
    from vardax_core.problems import get_problem

    twin = get_twin("l96_full_dt005")
    setup = twin.setup(args.cycles)
    problem = get_problem("lorenz96_cycling", background_std=args.background_std)
    key = jax.random.key(0)
    truth, y, mask = setup.simulate(jnp.asarray(free[EVAL_START]), jax.random.fold_in(key, 2))
    bg = truth[0] + jax.random.normal(jax.random.fold_in(key, 3), truth[0].shape)
    t = time.perf_counter()
    head = build_posterior(problem, HEAD, jax.random.key(1))
    head, _ = fit_simulated(head, problem, budget={"n_pairs": args.head_pairs, "epoch_pairs": min(args.head_pairs, 100_000),
                                                   "n_val": min(4096, args.head_pairs)},
                            config={"batch_size": 256, "learning_rate": 1e-3, "patience": 5}, seed=0, progress=False)
    train_s = time.perf_counter() - t
    steps = {"4DVar oracle": BackgroundConditionedStep(problem, OracleAnalyser()),
             "amortized Gaussian head": head.as_analysis_step(problem)}
    ye, me = problem.simulate(jax.random.key(99), 1)[1:]
    # the single event cut once: an eager slice inside a timed call costs more than a dispatch
    y1, m1 = jax.block_until_ready((ye[0], me[0]))
    yb, mb = problem.simulate(jax.random.key(98), args.batch_events)[1:]
    rows, out = [], {}
    for name, step in steps.items():
        res = jax.block_until_ready(run_cycle(setup, step, truth, y, mask, bg, jax.random.fold_in(key, 4)))
        t = time.perf_counter()
        jax.block_until_ready(run_cycle(setup, step, truth, y, mask, bg, jax.random.fold_in(key, 4)))
        per_cycle = (time.perf_counter() - t) / setup.n_cycles
        analyse = jax.jit(lambda yy, mm, a=step.analyser: a(problem, yy, mm, jax.random.key(0)))
        per_analysis = median_call_seconds(lambda _: jax.block_until_ready(analyse(y1, m1)),
                                           args.timing_calls, warmup=1)
        # the batching lever: B independent events in one call (not the cycle's sequential use)
        batched = jax.jit(jax.vmap(lambda yy, mm, a=step.analyser: a(problem, yy, mm, jax.random.key(0))))
        per_batched = median_call_seconds(lambda _: jax.block_until_ready(batched(yb, mb)), 5,
                                          warmup=1) / args.batch_events
        s = res.summary(setup.burn_in)
        out[name] = {**s, "per_analysis_s": per_analysis, "per_cycle_s": per_cycle,
                     "per_analysis_batched_s": per_batched, "flops": _xla_flops(analyse, (y1, m1))}
        rows.append([name, Num(s["rmse_a"], ".3f"), Num(s["spread_ratio"], ".2f"), Num(s["coverage_90"], ".2f"),
                     Num(per_analysis * 1e6, ",.4g", " µs"), Num(per_cycle * 1e6, ",.4g", " µs")])
    rec.line(f"amortized in the loop: lorenz96_cycling (σ_b = {args.background_std}), head trained on "
             f"{args.head_pairs} fresh pairs in {train_s:.0f} s; {setup.n_cycles} cycles of the evaluation truth")
    rec.table("amortized_in_the_loop", "l96_full_dt005: the amortized analysis step against the 4DVar oracle in the same loop",
              ["analysis step", "RMSE", "spread / RMSE", "90 % coverage", "one analysis (median)", "per cycle in the loop"],
              rows)
    o, h = out["4DVar oracle"], out["amortized Gaussian head"]
    rec.target("head RMSE within 10 % of the oracle's in the same loop", Num(h["rmse_a"] / o["rmse_a"], ".3f"),
               "<= 1.10", h["rmse_a"] <= 1.1 * o["rmse_a"])
    off = abs(h["spread_ratio"] - 1)
    rec.target(f"head spread / RMSE {h['spread_ratio']:.3f}: abs(spread / RMSE − 1)", Num(off, ".3f"), "<= 0.1", off <= 0.1)
    # The ceiling of that ratio on this machine: the head cannot finish one analysis faster
    # than its own arithmetic at the machine's peak rate, nor than one jitted call's dispatch.
    peak, peak_text = peak_flops()
    floor_flops = h["flops"] / peak
    identity = jax.jit(lambda v: v)
    dispatch = median_call_seconds(lambda _: jax.block_until_ready(identity(y1)), args.timing_calls, warmup=1)
    floor = max(floor_flops, dispatch)
    rec.line(f"ceiling of the speed-up: the head's analysis is {h['flops'] / 1e6:,.2f} Mflop (XLA cost analysis; "
             f"the oracle's loop-free count, each while-loop body once, {o['flops'] / 1e6:,.2f} Mflop); at the peak "
             f"rate {peak_text} that is {floor_flops * 1e6:,.2f} µs; one jitted call's dispatch (identity, batch 1, "
             f"median) {dispatch * 1e6:,.2f} µs; so no head call can take under {floor * 1e6:,.2f} µs and the speed-up "
             f"over the oracle's {o['per_analysis_s'] * 1e6:,.0f} µs cannot exceed {o['per_analysis_s'] / floor:,.0f}x "
             f"(1000x would need {o['per_analysis_s'] / 1000 * 1e9:,.0f} ns per analysis)")
    rec.data("speedup_ceiling", {"head_flops": h["flops"], "oracle_flops_loop_bodies_once": o["flops"],
                                 "peak_flops": peak, "dispatch_s": dispatch, "ceiling": o["per_analysis_s"] / floor})
    rec.line(f"lever, batching: {args.batch_events} independent events in one vmapped call (not how a cycle runs: its "
             f"analyses are sequential) take {h['per_analysis_batched_s'] * 1e6:,.3g} µs per analysis by the head and "
             f"{o['per_analysis_batched_s'] * 1e6:,.3g} µs by the oracle: "
             f"{o['per_analysis_batched_s'] / h['per_analysis_batched_s']:,.3g}x")
    rec.data("speedup_batched", {"batch_events": args.batch_events, "head_s": h["per_analysis_batched_s"],
                                 "oracle_s": o["per_analysis_batched_s"]})
    rec.target(f"head speed-up per analysis over the oracle (its ceiling on this machine: "
               f"{o['per_analysis_s'] / floor:,.0f}x, see above)", ratio(o["per_analysis_s"] / h["per_analysis_s"]),
               ">= 1000x", o["per_analysis_s"] >= 1000 * h["per_analysis_s"])


def main(argv=None):
    ap = parser(__doc__.splitlines()[0], quick={"cycles": 60, "tune_cycles": 30, "twins": "l96_full_dt005",
                                                "head_pairs": 2048, "timing_calls": 20, "methods": "climatology,EnKF",
                                                "batch_events": 16})
    ap.add_argument("--twins", default=",".join(PUBLISHED_TWINS), help="comma-separated twin names")
    ap.add_argument("--cycles", type=int, default=None, help="evaluation cycles (default: the twin's)")
    ap.add_argument("--tune-cycles", type=int, default=600, help="cycles of each tuning run")
    ap.add_argument("--methods", default=None,
                    help="comma-separated methods to run: climatology, optimal interpolation, 3D-Var, EnKF, 4D-Var, iEnKS "
                         "(default: all)")
    ap.add_argument("--background-std", type=float, default=0.5, help="σ_b of the background-conditioned problem")
    ap.add_argument("--head-pairs", type=int, default=1_000_000, help="fresh training pairs of the head")
    ap.add_argument("--timing-calls", type=int, default=2000, help="warm calls timed per analyser")
    ap.add_argument("--batch-events", type=int, default=1024,
                    help="events of the batched timing (the batching lever of the speed-up)")
    ap.add_argument("--dapper-python", default=os.environ.get("VARDAX_DAPPER_PYTHON") or None,
                    help="interpreter of an environment holding DAPPER (make dapper-venv): runs its EnKF on the "
                         "same truth and observations as ours (default: $VARDAX_DAPPER_PYTHON; none: not run)")
    args = parse_args(ap, argv)
    rec = Record("cycling", args)
    rec.line(f"machine: {machine()}")
    free, mu, C = lorenz96_climatology()
    key = jax.random.key(0)
    for name in args.twins.split(","):
        twin = get_twin(name)
        setup = twin.setup(args.cycles)
        tune_setup = twin.setup(args.tune_cycles)
        tune = tune_setup.simulate(jnp.asarray(free[TUNE_START]), jax.random.fold_in(key, 1))
        evaluation = setup.simulate(jnp.asarray(free[EVAL_START]), jax.random.fold_in(key, 2))
        rec.line(f"{name}: {twin.description}; {setup.n_cycles} cycles ({setup.burn_in} spin-up), "
                 f"tuning on {tune_setup.n_cycles} cycles of another truth; published: {twin.source}")

        def background(truth):
            return truth[0] + jax.random.normal(jax.random.fold_in(key, 3), truth[0].shape)

        def run(step, s, data):
            truth, y, mask = data
            r = run_cycle(s, step, truth, y, mask, background(truth), jax.random.fold_in(key, 4))
            jax.block_until_ready(r)
            return r

        rows, series = [], {}
        for label, pub_key, options in candidates(twin, C, mu):
            if args.methods and label.split(",")[0].split(" (")[0] not in args.methods.split(","):
                continue
            scores = []
            for text, step in options:
                s = run(step, tune_setup, tune).summary(tune_setup.burn_in)["rmse_a"]
                scores.append(s if np.isfinite(s) else np.inf)
            text, step = options[int(np.argmin(scores))]
            t = time.perf_counter()
            run(step, tune_setup, tune)
            per_analysis = (time.perf_counter() - t) / tune_setup.n_cycles
            res = run(step, setup, evaluation)
            s = res.summary(setup.burn_in)
            series[label] = np.asarray(res.rmse_a).tolist()
            pub = twin.published.get(pub_key) if pub_key else None
            rows.append([label, text, Num(s["rmse_a"], ".3f"), None if pub is None else Num(pub, ".3g"),
                         None if pub is None else Num(s["rmse_a"] / pub, ".2f"), Num(s["spread_ratio"], ".2f"),
                         Num(s["coverage_90"], ".2f"), Num(per_analysis * 1e3, ".3g", " ms")])
            if label == "EnKF" and pub is not None:
                off = abs(s["rmse_a"] / pub - 1)
                rec.target(f"{name}: EnKF RMSE {s['rmse_a']:.3f} against the published {pub}: abs(ours / published − 1)",
                           Num(off, ".3f"), "<= 0.1", off <= 0.1)
                rows.append(dapper_row(args, twin, setup, tune_setup, tune, evaluation, background, s, rec))
            if label.startswith("iEnKS"):
                rows.append(dapper_ienks_row(args, twin, setup, evaluation, background, step.lag, s, rec))
        ours = {label for label, _, _ in candidates(twin, C, mu)}
        for key_pub, value in twin.published.items():
            if not any(r[0] == key_pub for r in rows):
                why = "not run (--methods)" if key_pub in ours else "not implemented here"
                rows.append([key_pub, why, None, Num(value, ".3g"), None, None, None, None])
        rec.table(f"rmse_{name}", f"{name}: time-averaged analysis RMSE ({twin.description})",
                  ["method", "setting (tuned on the tuning truth)", "RMSE (ours)", "RMSE (published)",
                   "ours / published", "spread / RMSE", "90 % coverage", "time per analysis"], rows)
        rec.data(f"rmse_{name}", series)
    amortized_in_the_loop(rec, args, free)
    rec.save()


if __name__ == "__main__":
    main()
