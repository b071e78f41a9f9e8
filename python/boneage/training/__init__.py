"""Shards -> a run directory (models, history, metrics): the third stage.

- :mod:`~boneage.training.loop`: :class:`~boneage.training.loop.TrainConfig` and ``train``.
- :mod:`~boneage.training.callbacks`: checkpoints, the time budget, early stopping, logs.
- :mod:`~boneage.training.schedules`: the paper's warm-up + cosine learning-rate schedule.
- :mod:`~boneage.training.distribution`: data parallelism over the visible devices.
- :mod:`~boneage.training.demo` and :mod:`~boneage.training.synthetic`: the no-data demo on
  synthetic hand phantoms.

Nothing is imported here, so ``import boneage.training.demo`` does not pull in Keras before a
command has chosen its backend.
"""
