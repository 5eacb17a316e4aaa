"""The ``vardax`` command line: run the cycle or any single step, and show the registry.

    vardax cycle   [--config lorenz96]      the six-step cycle (all configured heads)
    vardax simulate|oracle [--config ...]   one step
    vardax train   [--config ...] [--head NAME]
    vardax gates   [--config ...] [--version V]
    vardax promote [--config ...] [--version V]
    vardax emulator [--config ...] [--oracle]
                                            train + gate the emulator (champion of
                                            vardax-<problem>-emulator only if both gates
                                            pass); --oracle: also the emulator-based 4DVar
                                            on the held-out events, gated against the oracle
    vardax status  [--config ...]           champion, versions and their gate outcomes
    vardax catalogue --out PATH [--n 1000] [--seed 0] [--config ...]
                                            a synthetic catalogue from the config's problem
    vardax reprocess --catalogue PATH [--config ...] [--n-samples 0] [--dask-address tcp://…]
                                            the champion over a catalogue (analyses store)
    vardax assimilate [--config l96_full_dt005]
                                            cycled DA on a twin of a published Lorenz-96
                                            set-up (configs/twins/): every method's RMSE,
                                            spread and PIT in Zarr, figures, summary
    vardax serve   [--port 4200]            Prefect server + deployments + worker (``make serve``)
    vardax ui      [--port 5000] [--config ...]
                                            the MLflow UI (``make ui``)
    vardax --version, vardax COMMAND --help

``--config`` takes a path or the name of a file in ``configs/`` (default ``lorenz96``).
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, load_config


#: every subcommand with what it does (its --help)
COMMANDS = {
    "cycle": "run the six-step cycle: simulate pairs, oracle, (emulator), train and gate every head, promote",
    "simulate": "step 1: simulate the training pairs and the held-out events (Zarr stores)",
    "oracle": "step 2: solve the held-out events by 4DVar (+ the MCMC reference posterior when configured)",
    "train": "step 5: train the configured heads (or --head NAME) and register each as a new model version",
    "gates": "run the three gates on a model version (default: the challenger) under the config's gate profile",
    "promote": "gate a version (default: the challenger), then make it champion if it passed and is at least "
               "as good as the champion",
    "status": "show the registered model: champion, challenger, every version's gate outcomes and verdict",
    "catalogue": "write a synthetic catalogue of events from the config's problem",
    "reprocess": "run the champion over a catalogue into an analyses store (resumable; skipped if done)",
    "emulator": "steps 3-4: train and gate the neural emulator (--oracle: also its 4DVar against the oracle)",
    "assimilate": "cycled data assimilation on a twin (configs/twins/): truth, forecasts and analyses by "
                  "every configured method, results in Zarr, figures and a summary",
    "serve": "start a local Prefect server with the deployments applied and a process worker (Ctrl-C stops "
             "both)",
    "ui": "open the MLflow UI on the config's tracking store (Ctrl-C stops it and its workers)",
}


def _print_status(status: dict) -> None:
    print(f"registered model: {status['model']}")
    print(f"champion: {status['champion'] or '-'}   challenger: {status['challenger'] or '-'}")
    print("| version | aliases | head | type | agreement | adjoint | sbc | all passed | profile | current pass |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in status["versions"]:
        g = r["gates"]
        current = "yes" if not r["current"] else ("no" if r["gates_passed"] != "true" else "stale: " + r["current"][0])
        print(
            f"| {r['version']} | {','.join(r['aliases']) or '-'} | {r['head']} | {r['head_type']} | "
            f"{g.get('posterior_agreement', '-')} | {g.get('adjoint_calibration', '-')} | {g.get('sbc', '-')} | "
            f"{r['gates_passed']} | {r['profile']} | {current} |"
        )


def main(argv: list[str] | None = None) -> int:
    from vardax_core import __version__

    parser = argparse.ArgumentParser(prog="vardax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vardax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, what in COMMANDS.items():
        p = sub.add_parser(name, help=what, description=what)
        if name == "serve":
            p.add_argument("--port", type=int, default=4200, help="Prefect server port (default 4200)")
            continue
        if name == "assimilate":
            p.add_argument("--config", default="l96_full_dt005",
                           help="twin config path or name in configs/twins/ (default l96_full_dt005)")
            continue
        p.add_argument("--config", default=None if name == "ui" else "lorenz96",
                       help="config path or name in configs/ whose tracking store to show (default: the project's "
                            "own MLflow store)" if name == "ui" else
                            "config path or name in configs/ (default lorenz96)")
        if name == "ui":
            p.add_argument("--port", type=int, default=5000, help="MLflow UI port (default 5000)")
            continue
        if name == "train":
            p.add_argument("--head", default=None, help="train only this head (default: all)")
        if name in ("gates", "promote"):
            p.add_argument("--version", default=None, help="model version (default: the challenger)")
        if name == "promote":
            p.add_argument("--force", action="store_true",
                           help="promote even if its energy score is worse than the champion's (logged)")
        if name == "emulator":
            p.add_argument("--oracle", action="store_true",
                           help="also run the emulator-based oracle on the held-out events and gate it")
        if name == "catalogue":
            p.add_argument("--out", required=True, help="path (or fsspec URL) of the catalogue store")
            p.add_argument("--n", type=int, default=1000, help="number of events")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--chunk-size", type=int, default=4096)
        if name == "reprocess":
            p.add_argument("--catalogue", required=True, help="catalogue store to reprocess")
            p.add_argument("--n-samples", type=int, default=0, help="posterior draws per event (0: Gaussian quantiles)")
            p.add_argument("--quantiles", type=float, nargs="+", default=[0.05, 0.5, 0.95])
            p.add_argument("--dask-address", default=None, help="run chunks on this Dask scheduler")
            p.add_argument("--workers", type=int, default=1, help="threads for chunks (without Dask)")
    args = parser.parse_args(argv)
    if args.command in ("serve", "ui"):
        from . import servers

        if args.command == "serve":
            servers.serve(args.port)
        else:
            servers.ui(args.port, args.config)
        return 0
    if args.command == "assimilate":
        from .assimilation import assimilate, load_assimilation_config

        try:
            twin_config = load_assimilation_config(args.config)
        except ConfigError as e:
            print(f"vardax: {e}", file=sys.stderr)
            return 2
        assimilate(twin_config)
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"vardax: {e}", file=sys.stderr)
        return 2

    if args.command == "status":
        from . import tracking

        _print_status(tracking.registry_status(tracking.configure(config), config.registered_model_name(),
                                               config.problem.build().hash))
        return 0
    if args.command == "catalogue":
        from vardax_core.data import write_catalogue

        path = write_catalogue(config.problem.build(), args.out, n_events=args.n, seed=args.seed,
                               chunk_size=args.chunk_size)
        print(f"wrote a synthetic catalogue of {args.n} {config.problem.name} events to {path}")
        return 0
    if args.command == "reprocess":
        from .reprocess import reprocess_catalogue

        ref = reprocess_catalogue(args.catalogue, config, quantiles=args.quantiles, n_samples=args.n_samples,
                                  dask_address=args.dask_address, workers=args.workers)
        print(json.dumps(ref.model_dump(), indent=2))
        return 0
    if args.command == "cycle":
        from .cycle import print_summary, six_step_cycle

        print_summary(six_step_cycle(config))
        return 0
    if args.command == "emulator":
        from .emulator import emulator_oracle, train_emulator

        outcome = train_emulator(config)
        out = {"emulator": json.loads(outcome.model_dump_json(exclude={"report_json"}))}
        if args.oracle:
            from .oracle import oracle_solve
            from .simulate import simulate_pairs

            oracle = oracle_solve(config, simulate_pairs(config, ("heldout",))["heldout"])
            agreement = emulator_oracle(config, outcome.model, oracle)
            out["agreement"] = json.loads(agreement.model_dump_json(exclude={"gate_json"}))
        print(json.dumps(out, indent=2))
        return 0
    if args.command == "simulate":
        from .simulate import simulate_pairs

        refs = simulate_pairs(config)
        print(json.dumps({k: v.model_dump() for k, v in refs.items()}, indent=2))
        return 0
    if args.command == "oracle":
        from .oracle import oracle_solve
        from .simulate import simulate_pairs

        ref = oracle_solve(config, simulate_pairs(config, ("heldout",))["heldout"])
        print(json.dumps(ref.model_dump(), indent=2))
        return 0
    if args.command == "train":
        from .oracle import oracle_solve
        from .simulate import simulate_pairs
        from .train import train_head

        heads = [h for h in config.heads if args.head in (None, h.name)]
        if not heads:
            print(f"vardax: no head named {args.head!r} in the config", file=sys.stderr)
            return 2
        refs = simulate_pairs(config)
        oracle = oracle_solve(config, refs["heldout"])
        for h in heads:
            print(json.dumps(train_head(config, h, refs["train"], oracle).model_dump(), indent=2))
        return 0
    if args.command in ("gates", "promote"):
        from . import tracking
        from .gates import validate_gates, version_ref
        from .oracle import oracle_solve
        from .promote import promote
        from .simulate import simulate_pairs

        client = tracking.configure(config)
        name = config.registered_model_name()
        version = args.version or tracking.current_alias(client, name, tracking.CHALLENGER)
        if version is None:
            print(f"vardax: {name!r} has no versions yet; run `vardax train` first", file=sys.stderr)
            return 2
        oracle = oracle_solve(config, simulate_pairs(config, ("heldout",))["heldout"])
        outcome = validate_gates(config, version_ref(client, name, version), oracle)
        print(outcome.report_json)
        if args.command == "promote":
            print(promote(config, [outcome], force=args.force).reason)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
