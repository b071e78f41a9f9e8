"""Subprocess side of tests/test_multiworker.py: one worker of a multi-worker training run.

Usage: python tests/_multiworker_worker.py WEIGHTS.npz TRAIN-ARGS...

Runs ``python -m boneage.train TRAIN-ARGS`` in this process and, when training ends (after
early stopping restored the best weights, i.e. what the chief then saves), writes this
worker's weights to WEIGHTS.npz, so the test can check that every worker ends identical.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def main() -> int:
    dump, argv = sys.argv[1], sys.argv[2:]
    import keras

    from boneage import train
    from boneage.training import loop

    class DumpWeights(keras.callbacks.Callback):
        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            weights = self.model.get_weights()
            np.savez(dump, *weights)

    original = loop.standard_callbacks

    def with_dump(*args: Any, **kwargs: Any) -> list[Any]:
        return [*original(*args, **kwargs), DumpWeights()]

    loop.standard_callbacks = with_dump  # type: ignore[assignment]
    return train.main(argv)


if __name__ == "__main__":
    sys.exit(main())
