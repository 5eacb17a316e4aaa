"""Training on fresh simulated pairs drawn on the fly: no store, a new batch every step.

Simulation is cheap next to training (lorenz96: tens of thousands of pairs per second on
two cores), so a head need not see the same pair twice. :func:`fit_simulated` draws
every training batch from ``problem.simulate`` with a key derived from the seed and the
batch's global position, so a run is reproducible from (seed, config) alone, never
repeats a pair, and resumes from a checkpoint bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np

from .._checks import DataclassConfig
from ..problems import Problem
from ._consistency import ConsistencyConfig, JacobianConsistency
from ._posterior import AmortizedPosterior
from ._standardize import StatsAccumulator
from ._train import TrainConfig, _leaves_hash, _pad, start_run

CHECKPOINT_FILE = "checkpoint-simulated.vdx"


@dataclasses.dataclass(frozen=True)
class SimulationBudget(DataclassConfig):
    """How many fresh pairs :func:`fit_simulated` draws, and how it reports on them.

    - ``n_pairs``: the training budget — pairs drawn in all (rounded down to whole
      batches of ``TrainConfig.batch_size``); the learning-rate schedule runs over it.
    - ``epoch_pairs``: pairs per pseudo-epoch, the cadence of validation, early
      stopping (``TrainConfig.patience`` pseudo-epochs without improvement) and
      checkpoints; ``TrainConfig.max_epochs`` is ignored (the budget sets it).
    - ``n_val``: a fixed validation set simulated once from its own key.
    - ``n_standardize``: pairs the standardisation statistics are computed on (the
      first training pairs of the stream).
    """

    n_pairs: int = 1_000_000
    epoch_pairs: int = 50_000
    n_val: int = 4096
    n_standardize: int = 20_000

    def __post_init__(self):
        for name in ("n_pairs", "epoch_pairs", "n_val", "n_standardize"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SimulationBudget: `{name}` must be a positive integer, got {v!r}")
        if self.epoch_pairs > self.n_pairs:
            raise ValueError(f"SimulationBudget: `epoch_pairs` ({self.epoch_pairs}) must be <= `n_pairs` "
                             f"({self.n_pairs})")


def _simulated_standardizer(problem: Problem, key, n: int, batch: int, n_state: int, n_obs: int, whiten: bool):
    acc = StatsAccumulator(n_state, n_obs, whiten)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        x, y, mask = (np.asarray(a) for a in problem.simulate(key, batch, start=start))
        acc.update(x[:m].reshape(m, -1), y[:m].reshape(m, -1), mask[:m].reshape(m, -1))
    return acc.result()


def fit_simulated(
    posterior: AmortizedPosterior,
    problem: Problem,
    *,
    budget: SimulationBudget | dict | None = None,
    config: TrainConfig | dict | None = None,
    seed: int = 0,
    checkpoint_dir: str | None = None,
    callback: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    consistency: ConsistencyConfig | dict | None = None,
) -> tuple[AmortizedPosterior, dict]:
    """Train ``posterior`` on ``budget.n_pairs`` fresh pairs of ``problem``.

    Keys from ``seed``: training pair g (0, 1, …, in order of use) is event g of
    ``problem.simulate(k_train, ·)``, the validation pairs events 0 … n_val − 1 of
    ``problem.simulate(k_val, ·)``. The standardisation statistics come from the first
    ``budget.n_standardize`` training pairs. Optimiser, schedule (warm-up and cosine over
    the whole budget, ``warmup_epochs`` in pseudo-epochs), gradient clipping, early
    stopping and checkpoints are those of :func:`fit` (``config``: a :class:`TrainConfig`;
    its ``max_epochs``, ``val_fraction``, ``buffer_chunks`` and ``augment`` do not apply).

    Returns ``(trained posterior, history)`` like :func:`fit`: the best-validation
    weights with the provenance (``source: "simulated"``, the budget, the seed) in
    ``config["training"]``; ``history["n_train"]`` is the number of pairs drawn.
    """
    budget = budget if isinstance(budget, SimulationBudget) else SimulationBudget.from_dict(budget)
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if cfg.augment != "none":
        raise ValueError("fit_simulated: `augment` does not apply to fresh simulated pairs; use 'none'")
    if posterior.problem_hash != problem.hash:
        raise ValueError(
            f"the posterior was built for problem hash {posterior.problem_hash}, but `problem` has hash "
            f"{problem.hash}; build the posterior for this problem"
        )
    B = cfg.batch_size
    steps_per_epoch = budget.epoch_pairs // B
    if steps_per_epoch < 1:
        raise ValueError(f"`epoch_pairs` ({budget.epoch_pairs}) must hold at least one batch of {B}")
    n_epochs = max(1, budget.n_pairs // (steps_per_epoch * B))
    if consistency is not None and not isinstance(consistency, ConsistencyConfig):
        consistency = ConsistencyConfig.from_dict(consistency)
    penalty = (JacobianConsistency(problem, consistency)
               if consistency is not None and consistency.weight > 0 else None)
    cfg = dataclasses.replace(cfg, max_epochs=n_epochs)
    key = jax.random.key(int(seed))
    k_train, k_val, k_noise = (jax.random.fold_in(key, i) for i in (11, 12, 13))
    identity = {
        "model_config": posterior.config_json,
        "initial_weights": _leaves_hash((posterior.encoder, posterior.head)),
        "train_config": cfg.to_dict(),
        "budget": budget.to_dict(),
        "seed": int(seed),
        "source": {"simulated": problem.hash},
        "consistency": None if penalty is None else consistency.to_dict(),
    }
    n_obs = math.prod((posterior.n_times, *posterior.obs_shape))
    model = posterior.with_standardizer(_simulated_standardizer(
        problem, k_train, min(budget.n_standardize, budget.n_pairs), 4096, posterior.n_state, n_obs,
        posterior.standardizer.whiten))
    run = start_run(model, cfg, identity=identity, steps_per_epoch=steps_per_epoch, checkpoint_dir=checkpoint_dir,
                    checkpoint_file=CHECKPOINT_FILE, desc="fit (simulated)", progress=progress, callback=callback,
                    penalty=penalty)
    loop, schedule, train_step, eval_step = run.loop, run.schedule, run.train_step, run.eval_step
    params, frozen, rest, opt_state = run.params, run.frozen, run.rest, run.opt_state

    x_val, y_val, m_val = problem.simulate(k_val, budget.n_val)
    val_batches = [_pad({"x": x_val[i:i + B], "y": y_val[i:i + B], "mask": m_val[i:i + B]}, B)
                   for i in range(0, budget.n_val, B)]
    for epoch in loop.epochs():
        ekey = jax.random.fold_in(k_noise, epoch)
        losses = []
        for step in range(steps_per_epoch):
            start = (epoch * steps_per_epoch + step) * B
            x, y, mask = problem.simulate(k_train, B, start=start)
            lr = float(schedule(epoch * steps_per_epoch + step))
            params, opt_state, loss = train_step(params, frozen, opt_state, x, y, mask,
                                                 jax.random.fold_in(ekey, step), lr)
            losses.append(loss)
        train_loss = float(np.mean(jax.device_get(losses)))
        total, count = 0.0, 0.0
        for i, (b, w) in enumerate(val_batches):
            total += float(eval_step(params, frozen, b["x"], b["y"], b["mask"], w, jax.random.fold_in(k_val, i)))
            count += w.sum()
        loop.end_epoch(epoch, eqx.combine(params, frozen, rest), opt_state, train_loss, total / count,
                       what="fit (simulated)")

    n_drawn = loop.state["epoch"] * steps_per_epoch * B
    history = loop.history(n_drawn, budget.n_val)
    training = loop.provenance(seed, n_drawn, budget.n_val, source="simulated", budget=budget.to_dict(),
                               problem_hash=problem.hash,
                               consistency=None if penalty is None else consistency.to_dict())
    return loop.best.replace_config(training=training), history
