"""Data-parallel training across devices, chosen from the backend and what is visible.

TensorFlow backend: ``tf.distribute.MirroredStrategy`` over the GPUs. JAX backend:
``keras.distribution.DataParallel`` over the devices. One device (or ``--distribute off``):
nothing. ``BONEAGE_CPU_DEVICES=N`` splits the CPU into N logical devices so the
multi-device path is testable without GPUs (set before the backend initialises).

``--distribute multi-worker`` (several processes, usually one per machine) goes through
:func:`init_multi_worker`, which must run before any other TensorFlow op or JAX computation:
``tf.distribute.MultiWorkerMirroredStrategy`` reads the cluster from ``TF_CONFIG`` and can
only configure the collective runtime while the eager context is still unused, and
``jax.distributed.initialize`` must precede the first use of ``jax.devices()``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MULTI_WORKER = "multi-worker"


@dataclass(frozen=True)
class Worker:
    """This process's place in a multi-worker run: ``index`` 0 is the chief."""

    index: int = 0
    count: int = 1
    strategy: Any = None  # the TensorFlow strategy, created once at start-up

    @property
    def chief(self) -> bool:
        return self.index == 0


_WORKER = Worker()


def worker() -> Worker:
    """The current process's worker (index 0 of 1 unless :func:`init_multi_worker` ran)."""
    return _WORKER


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def init_multi_worker(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Worker:
    """Joins the cluster; call first thing in the process (see the module docstring).

    TensorFlow: the cluster and this worker's index come from ``TF_CONFIG`` (the flags are
    refused, so two sources cannot disagree). JAX: ``coordinator`` (``HOST:PORT`` of process
    0), ``num_processes`` and ``process_id`` from the arguments, else ``BONEAGE_COORDINATOR``
    / ``BONEAGE_NUM_PROCESSES`` / ``BONEAGE_PROCESS_ID``, else JAX's own discovery (Slurm,
    Kubernetes, ``JAX_COORDINATOR_ADDRESS``...).
    """
    global _WORKER
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        if coordinator or num_processes is not None or process_id is not None:
            raise ValueError(
                "on the TensorFlow backend the cluster comes from TF_CONFIG; "
                "--coordinator/--num-processes/--process-id are for JAX"
            )
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--distribute multi-worker on TensorFlow needs TF_CONFIG, e.g. "
                '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                '"task": {"type": "worker", "index": 0}}'
            )
        task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
        if task.get("type", "worker") not in ("worker", "chief"):
            raise ValueError(f"TF_CONFIG task type {task.get('type')!r}: use 'worker'")
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        count = len(resolver.cluster_spec().as_dict().get("worker", [])) or 1
        _patch_keras_multi_worker()
        _WORKER = Worker(index=int(resolver.task_id or 0), count=count, strategy=strategy)
        return _WORKER
    if backend == "jax":
        import jax

        coordinator = coordinator or os.environ.get("BONEAGE_COORDINATOR") or None
        if num_processes is None:
            num_processes = _env_int("BONEAGE_NUM_PROCESSES")
        if process_id is None:
            process_id = _env_int("BONEAGE_PROCESS_ID")
        # CPU processes exchange gradients through gloo (the default in recent JAX; named
        # so an older default of "none" cannot leave CPU collectives unimplemented).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
        )
        _WORKER = Worker(index=jax.process_index(), count=jax.process_count())
        return _WORKER
    raise ValueError(f"--distribute multi-worker is not supported on the {backend} backend")


def agree(flag: bool) -> bool:
    """True on every worker when it is True on any, so a decision taken from local facts
    (the wall clock of ``--max-minutes``) stops all workers at the same epoch; a worker that
    stopped alone would leave the others waiting in a collective forever."""
    w = _WORKER
    if w.count < 2:
        return flag
    if w.strategy is not None:
        import tensorflow as tf

        # A sum, not a max: tf.distribute reduces with SUM or MEAN only.
        local = w.strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
        return bool(w.strategy.reduce("SUM", local, axis=None).numpy() > 0)
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def average_across_workers(variables: list[Any]) -> None:
    """Sets each variable to its mean over the workers (TensorFlow multi-worker only).

    Keras 3's BatchNormalization keeps its moving mean and variance per replica (variables
    with aggregation "none"): each worker's follow its own batches, so without this the
    workers' models would agree on every trainable weight and differ in those statistics.
    The mean of the workers' estimates is the statistic of their union, up to the variance
    between workers' batch means. JAX needs none of this: its step is one global program,
    whose batch statistics are already over the global batch.
    """
    w = _WORKER
    if w.count < 2 or w.strategy is None or not variables:
        return
    import tensorflow as tf

    def local() -> list[Any]:
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce("MEAN", [tf.identity(v.value) for v in variables])

    reduced = w.strategy.run(local)
    for v, mean in zip(variables, reduced, strict=True):
        v.assign(w.strategy.experimental_local_results(mean)[0])


def _patch_keras_multi_worker() -> None:
    """Two fixes that let Keras 3's ``fit`` run under ``MultiWorkerMirroredStrategy``.

    Keras 3 (3.11, as of keras-team/keras#20585) fails there twice: its symbolic build reduces
    a whole nested input batch with ``strategy.reduce`` (``PerReplica`` is not convertible), and
    its multi-worker "mean" of the per-replica step outputs reduces scalars along axis 0
    (tensorflow/tensorflow#72388). The first now takes this worker's local batch (only shapes
    matter there); the second averages each output across replicas (``axis=None``), which is
    what Keras does for a single worker's replicas. Both patches apply only inside a
    multi-worker strategy, so nothing else changes.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as kt

    if getattr(kt, "_boneage_patched", False):
        return
    original_reduce = kt.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and kt._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    original_build = kt.TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if iterator is None or not kt._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tf.nest.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    kt.reduce_per_replica = reduce_per_replica
    kt.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    kt._boneage_patched = True


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

    if mode == MULTI_WORKER:
        with _multi_worker_scope() as info:
            yield info
        return
    found = devices() if mode != "off" else []
    info = {"strategy": "none", "devices": found, "replicas": 1, "workers": 1}
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


@contextlib.contextmanager
def _multi_worker_scope() -> Iterator[dict[str, Any]]:
    """The strategy made by :func:`init_multi_worker` (TF), or data parallel over every
    process's devices (JAX: ``jax.devices()`` is global once ``jax.distributed`` is up)."""
    import keras

    w = _WORKER
    if w.count < 2 and w.strategy is None:
        raise RuntimeError("--distribute multi-worker: init_multi_worker() was not called first")
    info: dict[str, Any] = {"workers": w.count, "worker_index": w.index}
    if w.strategy is not None:
        info.update(
            strategy="tf.distribute.MultiWorkerMirroredStrategy",
            devices=list(w.strategy.extended.worker_devices),
            replicas=w.strategy.num_replicas_in_sync,
        )
        with w.strategy.scope():
            yield info
        return
    import jax

    # Set for the rest of training, not just this scope: Keras's JAX trainer lays out the
    # training state with the distribution current at fit time, and without it the
    # variables spread over every process's devices would meet single-device programs.
    # end_multi_worker() unsets it for the chief's evaluation afterwards.
    dist = keras.distribution.DataParallel(devices=jax.devices())
    dist.auto_shard_dataset = False  # each process's PyDataset already reads its own part
    keras.distribution.set_distribution(dist)
    info.update(
        strategy="keras.distribution.DataParallel",
        devices=[str(d) for d in jax.devices()],
        replicas=len(jax.devices()),
    )
    yield info


def end_multi_worker() -> None:
    """After ``fit``: JAX's global distribution is unset, so what follows (the chief's saving
    and its evaluation of ``best.keras``) runs in this process alone."""
    if _WORKER.count > 1 and _WORKER.strategy is None:
        import keras

        keras.distribution.set_distribution(None)
