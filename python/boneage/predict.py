"""Bone age for radiographs: ``python -m boneage.predict IMAGE... --sex M|F`` and
:class:`Predictor` for other programs.

Prediction repeats exactly the preprocessing the model was trained with (its mode: the hand
crop, CLAHE, pad and resize, or the whole film squashed to a square and CLAHE), read from the
settings embedded in the model file. With no ``--model`` (and no ``$BONEAGE_MODEL``) the
model shipped inside the package, ``boneage/shipped/``, is used.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneage import _native as native

SHIPPED = Path(__file__).resolve().parent / "shipped"
"""The shipped model's folder: inside the package, so an installed wheel has it too."""
SEX = {"m": 1, "male": 1, "1": 1, "f": 0, "female": 0, "0": 0}


def default_model() -> Path:
    """``$BONEAGE_MODEL``, else the model shipped in the package (``boneage/shipped/``)."""
    env = os.environ.get("BONEAGE_MODEL")
    if env:
        return Path(env)
    shipped = sorted(SHIPPED.glob("*.keras"))
    if not shipped:
        raise FileNotFoundError(
            f"no model given and none shipped in {SHIPPED}; pass --model RUN_OR_MODEL "
            "(train one with python -m boneage.train)"
        )
    return shipped[0]


def parse_sex(value: str | int | bool) -> int:
    """``M``/``F`` (any case), ``male``/``female``, 1/0 -> 1 for male, 0 for female."""
    if isinstance(value, bool):
        return int(value)
    key = str(value).strip().lower()
    if key not in SEX:
        raise ValueError(f"unknown sex value {value!r}: use M or F")
    return SEX[key]


@dataclass
class Estimate:
    source: str
    male: int
    months: float
    years: float
    sigma_months: float | None
    localiser: str
    box: tuple[int, int, int, int]


class Predictor:
    """Loads a model once and estimates bone age for images or arrays.

    >>> p = Predictor()                    # the shipped model
    >>> p.predict("hand.png", male=True)   # months

    ``tta``: test-time augmentation copies averaged with the plain prediction; ``None`` takes
    the number recorded in the model file (chosen on validation data when it was shipped).
    """

    def __init__(
        self, model_path: str | os.PathLike[str] | None = None, tta: int | None = None
    ) -> None:
        from boneage import modelio

        self.path = modelio.resolve(model_path or default_model())
        self.model, self.meta = modelio.load(self.path)
        self.tta = self.meta.tta if tta is None else int(tta)
        self._detector: Any = None

    def prepare(
        self, image: str | os.PathLike[str] | np.ndarray
    ) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
        """Decode and prepare the image as the model's training images were (its mode)."""
        from boneage import hands
        from boneage.preparation import prepare

        pp = self.meta.preprocessing
        img = image if isinstance(image, np.ndarray) else native.read_gray(image)
        if img.ndim == 3:
            import cv2

            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if pp.mode == "crop" and pp.localiser in ("mediapipe", "auto") and self._detector is None:
            self._detector = hands.MediaPipeHands()
        return prepare(img, pp, detector=self._detector)

    def estimate(
        self, image: str | os.PathLike[str] | np.ndarray, male: int | bool | str
    ) -> Estimate:
        from boneage.evaluation import predict_arrays

        sex = parse_sex(male)
        pre, loc, box = self.prepare(image)
        mean, sigma = predict_arrays(
            self.model, pre[None], np.array([sex], np.float32), tta=self.tta
        )
        months = float(mean[0])
        return Estimate(
            source=str(image) if not isinstance(image, np.ndarray) else "<array>",
            male=sex,
            months=months,
            years=months / 12.0,
            sigma_months=None if sigma is None else float(sigma[0]),
            localiser=loc,
            box=tuple(int(v) for v in box),  # type: ignore[arg-type]
        )

    def predict(self, image: str | os.PathLike[str] | np.ndarray, male: int | bool | str) -> float:
        """Bone age in months."""
        return self.estimate(image, male).months


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m boneage.predict",
        description="Estimate bone age (months and years) from hand radiographs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("images", nargs="+", help="PNG/JPEG files or folders of them")
    p.add_argument("--sex", required=True, help="M or F (applies to every image)")
    p.add_argument("--model", help="model file or run directory (default: the shipped model)")
    p.add_argument("--tta", type=int,
                   help="test-time augmentation copies to average (default: the number the "
                        "model file records, 0 if none)")  # fmt: skip
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON output")
    fmt.add_argument("--csv", action="store_true", help="CSV output")
    return p


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in {".png", ".jpg", ".jpeg"})
        else:
            out.append(p)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    paths = _expand(args.images)
    if not paths:  # an empty folder is a mistake to report, not an empty table to print
        print(f"error: no images found in the inputs ({', '.join(args.images)})", file=sys.stderr)
        return 2
    try:
        sex = parse_sex(args.sex)
        predictor = Predictor(args.model, tta=args.tta)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results: list[Estimate] = []
    failed = 0
    for path in paths:
        try:
            results.append(predictor.estimate(path, sex))
        except (OSError, ValueError) as e:
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr)
    print(render(results, "json" if args.json else "csv" if args.csv else "table"))
    return 1 if failed else 0


def render(results: list[Estimate], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([asdict(r) for r in results], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "sex", "months", "years", "sigma_months", "localiser"])
        for r in results:
            sigma = "" if r.sigma_months is None else f"{r.sigma_months:.2f}"
            w.writerow(
                [
                    r.source,
                    "M" if r.male else "F",
                    f"{r.months:.2f}",
                    f"{r.years:.2f}",
                    sigma,
                    r.localiser,
                ]
            )
        return buf.getvalue().rstrip("\n")
    lines = [f"{'image':<40} {'sex':>3} {'months':>8} {'years':>6}  localiser"]
    for r in results:
        pm = f" ± {r.sigma_months:.1f}" if r.sigma_months is not None else ""
        lines.append(
            f"{Path(r.source).name[:40]:<40} {'M' if r.male else 'F':>3} {r.months:8.1f}{pm} "
            f"{r.years:6.1f}  {r.localiser}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
