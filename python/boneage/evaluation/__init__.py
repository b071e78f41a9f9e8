"""A model + shards (or files) -> figures: predictions, metrics with intervals, reports.

- :mod:`~boneage.evaluation.predictions`: predictions over a split, arrays or files (TTA).
- :mod:`~boneage.evaluation.metrics`: MAE/RMSE/R^2, bootstrap intervals, subgroup errors.
- :mod:`~boneage.evaluation.report`: plots and the Markdown report.
"""
