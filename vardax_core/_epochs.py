"""Epoch bookkeeping shared by every training loop (amortized posteriors, emulators).

:class:`EpochLoop` owns what does not depend on the model: early stopping on the
validation loss, the per-epoch checkpoint and resuming from it, the progress bar, the
metrics callback and the history. A training function builds its model and optimiser,
calls :meth:`EpochLoop.resume` once, then for each ``epoch in loop.epochs()`` runs its
minibatches and hands the epoch's losses to :meth:`EpochLoop.end_epoch`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any


class EpochLoop:
    """State of one training run.

    ``cfg`` needs ``max_epochs``, ``patience``, ``min_delta`` and ``batch_size``;
    ``identity`` (JSON-able) names the run: a checkpoint of another run is refused.
    ``lr_at_step(step)`` is the optimiser's schedule (reported per epoch).

    After every epoch (:meth:`end_epoch`): the model becomes ``best`` when the validation
    loss improves on the best by more than ``min_delta`` (else a bad epoch is counted;
    ``patience`` bad epochs in a row stop the run), the metrics train_loss, val_loss (and
    any extra ones), best_val_loss, learning_rate, epoch_seconds, pairs_per_second go to
    the history and to ``callback(epoch, metrics)``, and ``(model, opt_state, best)``
    with the loop state is written atomically to ``checkpoint_dir/checkpoint_file``.
    """

    def __init__(self, cfg, *, identity: dict, steps_per_epoch: int, total_steps: int,
                 lr_at_step: Callable[[int], Any], checkpoint_dir: str | None, checkpoint_file: str,
                 kind: str, version: int, desc: str, progress: bool,
                 callback: Callable[[int, dict], None] | None):
        self.cfg, self.identity = cfg, identity
        self.steps_per_epoch, self.total_steps, self.lr_at_step = steps_per_epoch, total_steps, lr_at_step
        self.ckpt = os.path.join(checkpoint_dir, checkpoint_file) if checkpoint_dir else None
        self.kind, self.version, self.desc = kind, version, desc
        self.progress, self.callback = progress, callback
        self.state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
                      "done": False}
        self.resumed_from: int | None = None
        self.best = None
        self.t_start = time.perf_counter()

    def resume(self, model, opt_state):
        """``(model, opt_state)`` from the checkpoint of this run if there is one (and
        ``self.best`` with them), else the arguments (and ``self.best = model``)."""
        from .amortized._serial import read_blob

        best = model
        if self.ckpt and os.path.exists(self.ckpt):
            header, (model, opt_state, best) = read_blob(
                self.ckpt, (model, opt_state, best), kind=self.kind, version=self.version)
            if header["identity"] != self.identity:
                diff = sorted(k for k in self.identity if header["identity"].get(k) != self.identity[k])
                raise ValueError(
                    f"checkpoint {self.ckpt!r} belongs to another training run (differs in: {', '.join(diff)}); "
                    "use another checkpoint_dir or delete it"
                )
            self.state = header["state"]
            self.resumed_from = self.state["epoch"]
        self.best = best
        return model, opt_state

    def epochs(self) -> Iterator[int]:
        """The epochs still to run, with the progress bar open around them."""
        bar = None
        if self.progress and not self.state["done"]:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.cfg.max_epochs, initial=self.state["epoch"], desc=self.desc, unit="epoch",
                       leave=False)
        self._bar = bar
        self.t_start = time.perf_counter()
        try:
            while not self.state["done"] and self.state["epoch"] < self.cfg.max_epochs:
                self._t0 = time.perf_counter()
                yield self.state["epoch"]
        finally:
            if bar is not None:
                bar.close()

    def end_epoch(self, epoch: int, model, opt_state, train_loss: float, val_loss: float, *,
                  extra: dict | None = None, what: str = "fit") -> None:
        """Close ``epoch``: early stopping, metrics, history, checkpoint, bar, callback.
        A non-finite loss raises ``FloatingPointError`` (nothing is checkpointed)."""
        if not (math.isfinite(val_loss) and math.isfinite(train_loss)):
            raise FloatingPointError(
                f"{what}: non-finite loss at epoch {epoch} (train {train_loss}, validation {val_loss}); "
                "lower the learning rate or check the training data"
            )
        state, cfg = self.state, self.cfg
        if val_loss < state["best_val_loss"] - cfg.min_delta:
            state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            self.best = model
        else:
            state["bad_epochs"] += 1
        seconds = time.perf_counter() - self._t0
        metrics = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            **(extra or {}),
            "best_val_loss": state["best_val_loss"],
            "learning_rate": float(self.lr_at_step(min((epoch + 1) * self.steps_per_epoch, self.total_steps))),
            "epoch_seconds": seconds,
            "pairs_per_second": self.steps_per_epoch * cfg.batch_size / seconds,
        }
        state["history"].append({"epoch": epoch, **metrics})
        state["epoch"] = epoch + 1
        state["stopped_early"] = state["bad_epochs"] >= cfg.patience
        state["done"] = state["stopped_early"] or state["epoch"] >= cfg.max_epochs
        if self.ckpt:
            from .amortized._serial import write_blob

            os.makedirs(os.path.dirname(self.ckpt), exist_ok=True)
            write_blob(self.ckpt, (model, opt_state, self.best), {"identity": self.identity, "state": state},
                       kind=self.kind, version=self.version)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
        if self.callback is not None:
            self.callback(epoch, metrics)

    def history(self, n_train: int, n_val: int) -> dict:
        state = self.state
        return {
            "epochs": state["history"],
            "best_epoch": state["best_epoch"],
            "best_val_loss": state["best_val_loss"],
            "stopped_early": bool(state.get("stopped_early", False)),
            "resumed_from_epoch": self.resumed_from,
            "n_train": int(n_train),
            "n_val": int(n_val),
            "seconds": time.perf_counter() - self.t_start,
        }

    def provenance(self, seed: int, n_train: int, n_val: int, **extra) -> dict:
        """The training record stored in the trained model's config."""
        return {
            **extra,
            "train_config": self.cfg.to_dict(),
            "seed": int(seed),
            "n_train": int(n_train),
            "n_val": int(n_val),
            "best_epoch": self.state["best_epoch"],
            "best_val_loss": self.state["best_val_loss"],
            "epochs_run": self.state["epoch"],
        }
