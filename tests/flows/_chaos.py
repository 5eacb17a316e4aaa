"""What the chaos test's child processes run, each until the test kills it (SIGKILL).

Children are forked from a multiprocessing *forkserver* that imported this module once
(jax, MLflow, the flows) and never started JAX's runtime (nothing here computes: forking
a process whose XLA thread pools run is unsafe), so a child starts in milliseconds
instead of re-importing the stack. A child runs a step's
flow function (``.fn``: the code the flow runs, without a Prefect server to talk to,
Prefect's run logger replaced by a plain one) exactly as an operator's run would.
"""

import logging
import os

import jax

jax.config.update("jax_enable_x64", True)

import flows.gates  # noqa: E402
import flows.promote  # noqa: E402
import flows.reprocess  # noqa: E402
from flows import tracking  # noqa: E402
from flows.config import PipelineConfig  # noqa: E402
from flows.refs import DatasetRef, GateOutcome  # noqa: E402

# what the flows import lazily (config validation, the tracking store, the writer), so that
# no child pays for imports: the server imports, each child only runs
import mlflow.store.model_registry.sqlalchemy_store  # noqa: E402,F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: E402,F401
import vardax_core.amortized  # noqa: E402,F401
import vardax_core.data  # noqa: E402,F401
import vardax_core.emulator  # noqa: E402,F401
import vardax_core.gates  # noqa: E402,F401
import vardax_core.oracle  # noqa: E402,F401
import vardax_core.problems  # noqa: E402,F401


def _plain_logger():
    return logging.getLogger("vardax.chaos")


def _without_prefect() -> None:
    for module in (flows.gates, flows.promote, flows.reprocess):
        module.get_run_logger = _plain_logger


def reprocess(config_json: str, catalogue: str, n_samples: int) -> None:
    """``reprocess-catalogue`` of ``catalogue`` with the config's champion."""
    _without_prefect()
    config = PipelineConfig.model_validate_json(config_json)
    flows.reprocess.reprocess_catalogue.fn(catalogue, config, n_samples=n_samples)


def regate_and_promote(config_json: str, failed_json: str, passed_json: str, oracle_json: str) -> None:
    """An operator's sequence: the champion fails a release re-gate (it is demoted, its
    verdict recorded), is gated again and passes (its verdict restored), and ``promote``
    ranks it against the version that took over."""
    _without_prefect()
    config = PipelineConfig.model_validate_json(config_json)
    failed, passed = GateOutcome.model_validate_json(failed_json), GateOutcome.model_validate_json(passed_json)
    oracle = DatasetRef.model_validate_json(oracle_json)
    client = tracking.configure(config)
    flows.gates.record_verdict(client, config, failed, oracle)
    flows.gates.record_verdict(client, config, passed, oracle)
    flows.promote.promote.fn(config, [passed])


def noop() -> None:
    """Nothing (starts the forkserver)."""


STEPS = {"reprocess": reprocess, "regate_and_promote": regate_and_promote, "noop": noop}


def run(step: str, done, jax_cache: str, *args) -> None:
    """Run ``STEPS[step](*args)``, set ``done`` when it returned (the step's own duration,
    without the interpreter's exit), then leave at once. Compiled programs are shared
    through JAX's persistent cache in ``jax_cache``, so that a child spends its time in the
    step, not in XLA."""
    jax.config.update("jax_compilation_cache_dir", jax_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    STEPS[step](*args)
    done.set()
    os._exit(0)
