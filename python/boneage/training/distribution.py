"""Data-parallel training across devices, chosen from the backend and what is visible.

TensorFlow backend: ``tf.distribute.MirroredStrategy`` over the GPUs. JAX backend:
``keras.distribution.DataParallel`` over the devices. One device (or ``--distribute off``):
nothing. ``BONEAGE_CPU_DEVICES=N`` splits the CPU into N logical devices so the
multi-device path is testable without GPUs (set before the backend initialises).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


def split_cpu_for_tests() -> int:
    """Applies BONEAGE_CPU_DEVICES (TensorFlow: logical devices; JAX: XLA flag). Returns N."""
    n = int(os.environ.get("BONEAGE_CPU_DEVICES", "0") or 0)
    if n < 2:
        return 0
    flag = f"--xla_force_host_platform_device_count={n}"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        with contextlib.suppress(RuntimeError):  # already initialised: keep what exists
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )
    return n


def devices() -> list[str]:
    """The accelerator devices training would spread over (CPU devices only when split)."""
    import keras

    backend = keras.backend.backend()
    fake = int(os.environ.get("BONEAGE_CPU_DEVICES", "0") or 0) >= 2
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        if gpus:
            return gpus
        return [d.name for d in tf.config.list_logical_devices("CPU")] if fake else []
    if backend == "jax":
        import jax

        gpus = [str(d) for d in jax.devices() if d.platform != "cpu"]
        if gpus:
            return gpus
        return [str(d) for d in jax.devices()] if fake else []
    return []


@contextlib.contextmanager
def scope(mode: str = "auto") -> Iterator[dict[str, Any]]:
    """Builds and compiles inside this scope; yields a description of what was chosen."""
    import keras

    found = devices() if mode != "off" else []
    info: dict[str, Any] = {"strategy": "none", "devices": found, "replicas": 1}
    if len(found) < 2:
        yield info
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=found)
        info.update(strategy="tf.distribute.MirroredStrategy", replicas=len(found))
        with strategy.scope():
            yield info
        return
    if backend == "jax":
        dist = keras.distribution.DataParallel()
        keras.distribution.set_distribution(dist)
        info.update(strategy="keras.distribution.DataParallel", replicas=len(found))
        try:
            yield info
        finally:
            keras.distribution.set_distribution(None)
        return
    yield info
