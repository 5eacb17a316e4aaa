"""Training an amortized posterior on a ``pairs`` store, streamed from Zarr."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import iter_minibatches, open_pairs, split_events
from ..problems import Problem
from ._augment import ring_shift_stride, shift_events
from ._nets import is_non_trainable, trainable_spec
from ._posterior import AmortizedPosterior
from ._standardize import StatsAccumulator
from .._checks import dataclass_from_dict
from .._epochs import EpochLoop

CHECKPOINT_KIND = "vardax-amortized-fit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.vdx"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit` (round-trips through JSON with ``to_dict`` /
    ``from_dict``).

    - ``batch_size``, ``max_epochs``; an epoch is one pass over the training events.
    - AdamW (``learning_rate`` peak, ``weight_decay``) with a linear warm-up over
      ``warmup_epochs`` and a cosine decay to ``learning_rate * final_lr_fraction`` at
      ``max_epochs``; gradients clipped to global norm ``grad_clip``.
    - ``val_fraction`` of the events held out (``split_events``, seeded); early stopping
      when the validation loss has not improved by ``min_delta`` for ``patience`` epochs;
      the returned weights are those of the best validation epoch.
    - ``buffer_chunks``: Zarr chunks read at a time while streaming (memory bound).
    - ``augment``: ``"none"`` or ``"ring_shift"`` — each training event is shifted
      cyclically by a random number of observation positions (the state with it) every
      epoch, and the standardisation pools over all shifts. Only for problems invariant
      under that shift (checked numerically; e.g. linear_gaussian, not lorenz96 whose
      prior mean is not uniform): it multiplies the number of distinct pairs by the
      number of observed points.
    """

    batch_size: int = 256
    max_epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    final_lr_fraction: float = 0.02
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 10
    min_delta: float = 0.0
    buffer_chunks: int = 8
    augment: str = "none"

    def __post_init__(self):
        for name in ("batch_size", "max_epochs", "patience", "buffer_chunks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig: `{name}` must be a positive integer, got {v!r}")
        for name in ("learning_rate", "grad_clip"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"TrainConfig: `{name}` must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "warmup_epochs", "min_delta"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"TrainConfig: `{name}` must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= float(self.final_lr_fraction) <= 1:
            raise ValueError(f"TrainConfig: `final_lr_fraction` must be in [0, 1], got {self.final_lr_fraction!r}")
        if not 0 < float(self.val_fraction) < 1:
            raise ValueError(f"TrainConfig: `val_fraction` must be in (0, 1), got {self.val_fraction!r}")
        if self.augment not in ("none", "ring_shift"):
            raise ValueError(f"TrainConfig: `augment` must be 'none' or 'ring_shift', got {self.augment!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        return dataclass_from_dict(cls, d)


def _loss(model: AmortizedPosterior, x, y, mask, weight, key):
    c = model.features(y, mask)
    u = model.standardise_x(x)
    losses = jax.vmap(model.head.loss)(u, c, jax.random.split(key, x.shape[0]))
    return jnp.sum(weight * losses.astype(jnp.float64)) / jnp.sum(weight)


def split_model(model: AmortizedPosterior):
    """(trainable, frozen, rest): the arrays the optimiser updates; the other arrays
    (standardisation, flowjax's non-trainable parameters and permutations), passed to
    the compiled steps as arguments but never updated; and the non-array rest."""
    arrays, rest = eqx.partition(model, eqx.is_array)
    trainable, frozen = eqx.partition(arrays, trainable_spec(model), is_leaf=is_non_trainable)
    return trainable, frozen, rest


_STEPS: dict = {}


def _steps(model: AmortizedPosterior, grad_clip: float, weight_decay: float, penalty=None):
    """Jitted (train_step, eval_step) for ``model``'s structure and the optimiser
    settings, built once and shared by every fit of the same architecture (see
    ``compiled`` in _posterior). The learning rate is an argument (the schedule is
    evaluated on the host), so schedules never trigger a recompilation."""
    trainable, frozen, rest = split_model(model)
    key = (model.meta, jax.tree_util.tree_structure(trainable), jax.tree_util.tree_structure(frozen),
           float(grad_clip), float(weight_decay),
           None if penalty is None else (penalty.problem.hash, penalty.weight, penalty.n_events, penalty.n_samples))
    if key in _STEPS:
        return _STEPS[key]
    optimizer = make_optimizer(grad_clip, weight_decay)

    def loss(tr, fr, x, y, mask, weight, k):
        return _loss(eqx.combine(tr, fr, rest), x, y, mask, weight, k)

    def train_loss(tr, fr, x, y, mask, weight, k):
        value = loss(tr, fr, x, y, mask, weight, k)
        if penalty is None:
            return value
        return value + penalty(eqx.combine(tr, fr, rest), y, mask, jax.random.fold_in(k, 1))

    @jax.jit
    def train_step(tr, fr, opt_state, x, y, mask, k, lr):
        value, grads = jax.value_and_grad(train_loss)(tr, fr, x, y, mask, jnp.ones(x.shape[0]), k)
        updates, opt_state = optimizer.update(grads, opt_state, tr)
        updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
        return optax.apply_updates(tr, updates), opt_state, value

    @jax.jit
    def eval_step(tr, fr, x, y, mask, weight, k):
        return loss(tr, fr, x, y, mask, weight, k) * jnp.sum(weight)

    _STEPS[key] = (optimizer, train_step, eval_step)
    return _STEPS[key]


class _Run(NamedTuple):
    loop: EpochLoop
    schedule: Callable
    train_step: Callable
    eval_step: Callable
    params: object
    frozen: object
    rest: object
    opt_state: object


def start_run(model: AmortizedPosterior, cfg: TrainConfig, *, identity: dict, steps_per_epoch: int,
              checkpoint_dir: str | None, checkpoint_file: str, desc: str, progress: bool,
              callback: Callable[[int, dict], None] | None, penalty=None) -> _Run:
    """What :func:`fit` and ``fit_simulated`` share: the warm-up + cosine schedule over
    ``cfg.max_epochs`` epochs of ``steps_per_epoch`` steps, the compiled steps, the
    :class:`EpochLoop` and the (possibly resumed) trainable / frozen arrays and
    optimiser state."""
    total_steps = steps_per_epoch * cfg.max_epochs
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps - 1)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, warmup, total_steps, cfg.learning_rate * cfg.final_lr_fraction
    )
    optimizer, train_step, eval_step = _steps(model, cfg.grad_clip, cfg.weight_decay, penalty)
    loop = EpochLoop(cfg, identity=identity, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                     lr_at_step=schedule, checkpoint_dir=checkpoint_dir, checkpoint_file=checkpoint_file,
                     kind=CHECKPOINT_KIND, version=CHECKPOINT_VERSION, desc=desc, progress=progress,
                     callback=callback)
    params, frozen, rest = split_model(model)
    model, opt_state = loop.resume(model, optimizer.init(params))
    params, frozen, rest = split_model(model)
    return _Run(loop, schedule, train_step, eval_step, params, frozen, rest, opt_state)


def make_optimizer(grad_clip: float, weight_decay: float):
    """AdamW at unit learning rate after global-norm clipping; the step scales the
    update by the scheduled learning rate (so the decay is decoupled, as in AdamW)."""
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adamw(1.0, weight_decay=weight_decay))


def _pad(batch: dict, size: int) -> tuple[dict, np.ndarray]:
    """Pad a short final batch to ``size`` events (one compiled shape) with weight 0."""
    m = len(batch["x"])
    weight = np.zeros(size)
    weight[:m] = 1.0
    if m == size:
        return batch, weight
    idx = np.concatenate([np.arange(m), np.zeros(size - m, dtype=int)])
    return {k: v[idx] for k, v in batch.items()}, weight


def fit_standardizer(
    ds, events: np.ndarray, n_state: int, n_obs: int, whiten: bool, buffer_chunks: int = 8, shift_stride: int | None = None
):
    """Standardisation statistics of ``events`` of a pairs dataset, streamed; with
    ``shift_stride``, pooled over every cyclic shift of the events (ring augmentation)."""
    acc = StatsAccumulator(n_state, n_obs, whiten)
    chunk = int(ds.attrs.get("chunk_size", 1024))
    for b in iter_minibatches(ds, chunk, events=events, shuffle=False, drop_last=False, buffer_chunks=buffer_chunks):
        n_shifts = b["y"].shape[-1] if shift_stride else 1
        for k in range(n_shifts):
            s = shift_events(b, np.full(len(b["x"]), k), shift_stride) if k else b
            acc.update(s["x"], s["y"], s["mask"])
    return acc.result()


def _leaves_hash(tree) -> str:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


def _validation_loss(eval_step, params, frozen, ds, val_idx, cfg: TrainConfig, key) -> float:
    total, count = 0.0, 0.0
    batches = iter_minibatches(
        ds, cfg.batch_size, events=val_idx, shuffle=False, drop_last=False, buffer_chunks=cfg.buffer_chunks
    )
    for i, batch in enumerate(batches):
        batch, weight = _pad(batch, cfg.batch_size)
        total += float(eval_step(params, frozen, batch["x"], batch["y"], batch["mask"], weight, jax.random.fold_in(key, i)))
        count += weight.sum()
    return total / count


def fit(
    posterior: AmortizedPosterior,
    pairs_path: str,
    *,
    problem: Problem,
    config: TrainConfig | dict | None = None,
    seed: int = 0,
    checkpoint_dir: str | None = None,
    callback: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> tuple[AmortizedPosterior, dict]:
    """Train ``posterior`` on the ``pairs`` store at ``pairs_path`` (validated against
    ``problem``), streaming minibatches with :func:`~vardax_core.data.iter_minibatches`.

    1. A seeded train/validation split (``split_events``); standardisation statistics
       of the training events, streamed, replace the model's.
    2. AdamW with warm-up + cosine schedule over ``config.max_epochs``; per-step keys
       (for the score head's noise) are ``fold_in`` of the seed, epoch and step, and the
       batch order depends only on (seed, epoch): the result is deterministic per seed.
    3. After every epoch: the validation loss (fixed keys), early stopping, a checkpoint
       in ``checkpoint_dir`` (atomic; current and best weights, optimiser state,
       history), then ``callback(epoch, metrics)`` with ``epoch`` counted from 0 and
       ``metrics`` = train_loss, val_loss, best_val_loss, learning_rate, epoch_seconds,
       pairs_per_second.
    4. With ``checkpoint_dir`` holding a checkpoint of the same run (same model config,
       initial weights, training config, seed and store), training resumes after the last
       finished epoch; the result equals the uninterrupted run's bit for bit. A finished
       run's checkpoint returns its result at once. A checkpoint of another run is an error.

    Returns ``(trained posterior, history)``: the best-validation weights, with the
    training provenance in ``config["training"]``; ``history`` has per-epoch ``epochs``
    metrics, ``best_epoch``, ``best_val_loss``, ``stopped_early``, ``resumed_from_epoch``,
    ``n_train``, ``n_val``.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if posterior.problem_hash != problem.hash:
        raise ValueError(
            f"the posterior was built for problem hash {posterior.problem_hash}, but `problem` has hash "
            f"{problem.hash}; build the posterior for this problem"
        )
    ds = open_pairs(pairs_path, problem)
    n_events = int(ds.sizes["event"])
    train_idx, val_idx = split_events(n_events, cfg.val_fraction, seed)
    if len(train_idx) < cfg.batch_size or len(val_idx) < 1:
        raise ValueError(
            f"{n_events} events with val_fraction={cfg.val_fraction} leave {len(train_idx)} training and "
            f"{len(val_idx)} validation events; need at least batch_size={cfg.batch_size} and 1"
        )
    steps_per_epoch = len(train_idx) // cfg.batch_size
    store = {k: ds.attrs.get(k) for k in ("problem_hash", "n_events", "chunk_size", "seed")}
    identity = {
        "model_config": posterior.config_json,
        "initial_weights": _leaves_hash((posterior.encoder, posterior.head)),
        "train_config": cfg.to_dict(),
        "seed": int(seed),
        "store": store,
    }

    stride = ring_shift_stride(problem) if cfg.augment == "ring_shift" else None
    model = posterior.with_standardizer(
        fit_standardizer(
            ds, train_idx, posterior.n_state, math.prod((posterior.n_times, *posterior.obs_shape)),
            posterior.standardizer.whiten, cfg.buffer_chunks, stride,
        )
    )
    run = start_run(model, cfg, identity=identity, steps_per_epoch=steps_per_epoch, checkpoint_dir=checkpoint_dir,
                    checkpoint_file=CHECKPOINT_FILE, desc="fit", progress=progress, callback=callback)
    loop, schedule, train_step, eval_step = run.loop, run.schedule, run.train_step, run.eval_step
    params, frozen, rest, opt_state = run.params, run.frozen, run.rest, run.opt_state

    key = jax.random.key(int(seed))
    train_key, val_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    for epoch in loop.epochs():
        ekey = jax.random.fold_in(train_key, epoch)
        losses = []
        batches = iter_minibatches(
            ds, cfg.batch_size, seed=seed, epoch=epoch, events=train_idx, buffer_chunks=cfg.buffer_chunks
        )
        shift_rng = np.random.default_rng([int(seed), epoch, 7])
        for step, batch in enumerate(batches):
            if stride is not None:
                batch = shift_events(batch, shift_rng.integers(0, batch["y"].shape[-1], len(batch["x"])), stride)
            lr = float(schedule(epoch * steps_per_epoch + step))
            params, opt_state, loss = train_step(
                params, frozen, opt_state, batch["x"], batch["y"], batch["mask"], jax.random.fold_in(ekey, step), lr
            )
            losses.append(loss)
        train_loss = float(np.mean(jax.device_get(losses)))
        val_loss = _validation_loss(eval_step, params, frozen, ds, val_idx, cfg, val_key)
        loop.end_epoch(epoch, eqx.combine(params, frozen, rest), opt_state, train_loss, val_loss, what="fit")

    history = loop.history(len(train_idx), len(val_idx))
    training = loop.provenance(seed, len(train_idx), len(val_idx), store=store)
    return loop.best.replace_config(training=training), history
