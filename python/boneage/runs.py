"""A training run's folder: the one place that names its files and reads and writes them.

Why: training writes, and ``--resume``, evaluate, shipping and model loading read, a run's
``config.json``, ``best.keras``, ``last.keras`` and ``state.json``; spelled and parsed in each
of them, one of them would one day drift. :class:`RunDir` owns the names and the formats.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunDir"]


@dataclass(frozen=True)
class RunDir:
    """The folder ``python -m boneage.train --out`` writes."""

    path: Path

    CONFIG = "config.json"
    """Everything to repeat the run (the training configuration, as JSON)."""
    BEST = "best.keras"
    """The model of the epoch with the best validation score."""
    LAST = "last.keras"
    """The model after the last finished epoch, with its optimizer state (for ``--resume``)."""
    STATE = "state.json"
    """The last finished epoch and the best score so far (for ``--resume``)."""
    HISTORY = "history.csv"
    METRICS = "metrics.json"

    @classmethod
    def of(cls, model_or_run: str | os.PathLike[str]) -> RunDir:
        """The run a model file lies in, or the run folder itself."""
        p = Path(model_or_run)
        return cls(p if p.is_dir() else p.parent)

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def state_file(self) -> Path:
        return self.path / self.STATE

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    def model_file(self) -> Path:
        """The model a run folder stands for: its best, else its last checkpoint."""
        for file in (self.best, self.last):
            if file.is_file():
                return file
        raise FileNotFoundError(f"{self.path}: no {self.BEST} or {self.LAST} in this run directory")

    def has_config(self) -> bool:
        return self.config_file.is_file()

    def read_config(self) -> dict[str, Any]:
        """The run's configuration as written by :meth:`write_config`."""
        if not self.config_file.is_file():
            raise FileNotFoundError(f"{self.path}: no {self.CONFIG} (not a training run?)")
        config = json.loads(self.config_file.read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{self.config_file}: not a run configuration")
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        """Written whole, then renamed: other workers may read it meanwhile (``--resume``)."""
        tmp = self.path / f".{self.CONFIG}.tmp"
        tmp.write_text(json.dumps(config, indent=2))
        os.replace(tmp, self.config_file)

    def data(self) -> str | None:
        """The shard folder the run trained on, or None for a model outside a run."""
        if not self.has_config():
            return None
        data = self.read_config().get("data")
        return None if data is None else str(data)

    def can_resume(self) -> bool:
        return self.last.is_file() and self.state_file.is_file()

    def read_state(self) -> tuple[int, float]:
        """(epochs finished, best monitored score so far)."""
        state = json.loads(self.state_file.read_text())
        return int(state["epoch"]), float(state.get("best", math.inf))

    def write_state(self, epoch: int, best: float) -> None:
        self.state_file.write_text(json.dumps({"epoch": int(epoch), "best": best}))
