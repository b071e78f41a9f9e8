"""The callbacks of a training run: checkpoints, a time budget, early stopping, logs.

Module-level classes (not closures inside the loop) so each can be read, tested and reused on
its own; :func:`standard_callbacks` is the set every run uses.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path
from typing import Any

import keras

from boneage import modelio
from boneage.runs import RunDir
from boneage.training import distribution

__all__ = ["AverageStatistics", "Checkpoints", "TimeLimit", "standard_callbacks"]


class Checkpoints(keras.callbacks.Callback):
    """``best.keras`` when the monitored MAE improves; ``last.keras`` + ``state.json`` every
    epoch, so ``--resume`` restarts from the last finished epoch with the best score kept."""

    def __init__(self, out: Path, meta: modelio.ModelMeta, monitor: str, resume: bool) -> None:
        super().__init__()
        self.out, self.meta, self.monitor = out, meta, monitor
        self.run = RunDir(out)
        self.best = math.inf
        if resume and self.run.state_file.exists():
            self.best = self.run.read_state()[1]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float((logs or {}).get(self.monitor, math.inf))
        if value < self.best:
            self.best = value
            modelio.save(self.model, self.run.best, self.meta)
        modelio.save(self.model, self.run.last, self.meta)
        self.run.write_state(epoch + 1, self.best)


class AverageStatistics(keras.callbacks.Callback):
    """Multi-worker (TensorFlow): the workers' non-trainable weights (BatchNormalization's
    moving statistics) averaged at every epoch end, before any callback after it saves or
    snapshots the model, so all workers hold, and the chief saves, the same model.
    See :func:`boneage.training.distribution.average_across_workers`."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        distribution.average_across_workers(list(self.model.non_trainable_variables))


class TimeLimit(keras.callbacks.Callback):
    """Stops after the epoch that crosses ``max_minutes`` (the best weights are still
    restored by early stopping), so a long run ends inside a known time budget."""

    def __init__(self, max_minutes: float | None) -> None:
        super().__init__()
        self.max_minutes = max_minutes
        self.start = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.max_minutes:
            return
        over = time.perf_counter() - self.start > self.max_minutes * 60
        # Every worker of a multi-worker run asks, so all stop after the same epoch.
        if distribution.agree(over):
            self.model.stop_training = True


def has_tensorflow() -> bool:
    """Whether TensorFlow is installed (Keras writes TensorBoard logs through it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def standard_callbacks(
    out: Path,
    meta: modelio.ModelMeta,
    monitor: str,
    resume: bool,
    patience: int,
    max_minutes: float | None,
    chief: bool = True,
) -> list[Any]:
    """The run's callbacks. ``chief=False`` (a multi-worker run's other workers) keeps only
    those that decide when to stop, identically on every worker from the globally reduced
    logs; the ones that write the run directory are the chief's alone."""
    stopping: list[Any] = [
        AverageStatistics(),
        TimeLimit(max_minutes),
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True, mode="min"
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if not chief:
        return stopping
    callbacks: list[Any] = [
        *stopping[:2],
        Checkpoints(out, meta, monitor, resume),
        *stopping[2:],
        keras.callbacks.CSVLogger(str(RunDir(out).history), append=resume),
    ]
    # GPU servers with only JAX or PyTorch still train, with history.csv and the plots as
    # the record.
    if has_tensorflow():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs"), write_graph=False))
    return callbacks
