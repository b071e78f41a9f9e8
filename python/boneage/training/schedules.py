"""The paper's learning-rate schedule: a cosine-shaped warm-up, then cosine decay.

The paper (section VI) trains with AdamW from a peak rate of 5e-3 under a "custom Cosine
Warm-Up and Decay" schedule whose first 20 % of the steps are a warm-up "linearly increasing
with cosine dynamics", then smooth cosine decay (its Figure 9). We read that as, with
``W = round(warmup_fraction * total_steps)`` warm-up steps and ``T = total_steps``::

    step < W:       lr = initial + (peak - initial) * (1 - cos(pi * step / W)) / 2
    W <= step < T:  lr = final + (peak - final) * (1 + cos(pi * (step - W) / (T - W))) / 2
    step >= T:      lr = final

The warm-up is a half-cosine ramp: it leaves ``initial`` and reaches ``peak`` with zero
slope, so the rate neither jumps at step 0 nor kinks at the peak, and the two halves join
smoothly. ``W = 0`` starts at the peak; ``W = T`` never decays.

:class:`WarmupCosine` evaluates the formula with ``keras.ops`` only (works under the
TensorFlow, JAX and PyTorch backends, traced or eager) and is registered for Keras
serialisation, so a saved optimizer reloads without ``custom_objects``. Its :meth:`lr_at` and
:meth:`values` are the same formula in NumPy, for plots (Figure 9) and tests.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
from keras import ops

__all__ = ["WarmupCosine"]


@keras.saving.register_keras_serializable(package="boneage")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Half-cosine warm-up from ``initial_lr`` to ``peak_lr``, cosine decay to ``final_lr``.

    Args:
        peak_lr: the rate at the end of the warm-up (the paper: 5e-3).
        total_steps: optimizer steps of the whole run (epochs * steps per epoch); the rate
            stays at ``final_lr`` after it.
        warmup_fraction: share of ``total_steps`` spent warming up (the paper: 0.2).
        initial_lr: the rate at step 0.
        final_lr: the rate at ``total_steps`` and after.
        name: a name for the schedule (serialised with it).
    """

    def __init__(
        self,
        peak_lr: float,
        total_steps: int,
        warmup_fraction: float = 0.2,
        initial_lr: float = 0.0,
        final_lr: float = 0.0,
        name: str = "warmup_cosine",
    ) -> None:
        super().__init__()
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        if not 0.0 <= warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction!r}")
        for label, value in (
            ("peak_lr", peak_lr),
            ("initial_lr", initial_lr),
            ("final_lr", final_lr),
        ):
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.initial_lr = float(initial_lr)
        self.final_lr = float(final_lr)
        self.name = name

    @property
    def warmup_steps(self) -> int:
        """``W``: the step at which the rate peaks."""
        return round(self.warmup_fraction * self.total_steps)

    def __call__(self, step: Any) -> Any:
        """The rate at ``step`` (a scalar tensor or number), as a float32 tensor."""
        step = ops.cast(step, "float32")
        w = float(self.warmup_steps)
        decay_len = float(max(self.total_steps - self.warmup_steps, 1))
        rise = ops.clip(step / max(w, 1.0), 0.0, 1.0)
        warm = self.initial_lr + (self.peak_lr - self.initial_lr) * 0.5 * (
            1.0 - ops.cos(math.pi * rise)
        )
        fall = ops.clip((step - w) / decay_len, 0.0, 1.0)
        decay = self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (
            1.0 + ops.cos(math.pi * fall)
        )
        return ops.where(step < w, warm, decay)

    def lr_at(self, step: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The same formula in NumPy (float64), elementwise over ``step``."""
        step = np.asarray(step, dtype=np.float64)
        w = float(self.warmup_steps)
        decay_len = float(max(self.total_steps - self.warmup_steps, 1))
        rise = np.clip(step / max(w, 1.0), 0.0, 1.0)
        warm = self.initial_lr + (self.peak_lr - self.initial_lr) * 0.5 * (
            1.0 - np.cos(math.pi * rise)
        )
        fall = np.clip((step - w) / decay_len, 0.0, 1.0)
        decay = self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (
            1.0 + np.cos(math.pi * fall)
        )
        return np.where(step < w, warm, decay)

    def values(self, steps: int | npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """Rates for plotting: at steps ``0..total_steps`` by default, ``0..steps-1`` for an
        int, or at the given steps."""
        if steps is None:
            return self.lr_at(np.arange(self.total_steps + 1))
        if np.ndim(steps) == 0:
            return self.lr_at(np.arange(int(np.asarray(steps))))
        return self.lr_at(steps)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "initial_lr": self.initial_lr,
            "final_lr": self.final_lr,
            "name": self.name,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"WarmupCosine({args})"
