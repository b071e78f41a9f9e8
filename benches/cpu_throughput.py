"""Training throughput of candidate models on this CPU, to choose what to train here.

    KERAS_BACKEND=jax python benches/cpu_throughput.py --size 100 --batch 64
    KERAS_BACKEND=tensorflow python benches/cpu_throughput.py --size 100 --batch 64

Times full training steps (forward, backward, AdamW update) on random inputs after a warm-up,
the same compiled step ``model.fit`` runs, and prints images/s per candidate. The backend is
fixed per process by Keras, so run it once per backend.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from boneage.models import build_model

CANDIDATES: dict[str, tuple[str, dict]] = {
    "small_cnn": ("small_cnn", {}),
    "resnet_compact(32..256; 1,2,2,2)": ("resnet_compact", {}),
    "resnet_compact(48..384; 1,2,2,2)": (
        "resnet_compact",
        {"widths": (48, 96, 192, 384), "stem": 32},
    ),
    "resnet_compact(64..512; 1,2,2,2)": (
        "resnet_compact",
        {"widths": (64, 128, 256, 512), "stem": 32},
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--only", nargs="*", help="substrings of candidate names to run")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = {
        "image": rng.random((args.batch, args.size, args.size, 1), dtype=np.float32),
        "male": rng.integers(0, 2, (args.batch, 1)).astype(np.float32),
    }
    y = rng.uniform(0, 228, (args.batch, 1)).astype(np.float32)
    print(f"backend {keras.backend.backend()}, {args.size} px, batch {args.batch}")
    for label, (name, opts) in CANDIDATES.items():
        if args.only and not any(s in label for s in args.only):
            continue
        model = build_model(name, args.size, **opts)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="huber")
        model.train_on_batch(x, y)  # compile
        model.train_on_batch(x, y)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            model.train_on_batch(x, y)
            n += 1
        dt = time.perf_counter() - start
        print(
            f"{label:<36} {model.count_params():>10,} params  {n * args.batch / dt:7.1f} images/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
