"""Bone age for radiographs: ``python -m boneage.predict IMAGE... --sex M|F`` and
:class:`Predictor` for other programs.

Images are PNG, JPEG or DICOM (recognised by content: ``.dcm``, no extension, a UID name).
Over a folder of mixed patients, each image's sex comes from ``--labels`` (a label CSV of any
RSNA schema, matched by case id = file name without extension), else from its DICOM
``PatientSex``, else from ``--sex``; an image with none is an error line for that image.

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
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from boneage.cli import command_parser, quiet_native_logs, run_command
from boneage.inference import Estimate, NoSexError, Predictor
from boneage.ingest import dicom
from boneage.ingest.labels import SexTable, normalise_id, read_sexes
from boneage.ingest.sources import IMAGE_SUFFIXES, case_id
from boneage.settings import parse_sex


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("predict", "Estimate bone age (months and years) from hand radiographs.")
    p.add_argument("images", nargs="+", help="PNG/JPEG/DICOM files or folders of them")
    p.add_argument("--sex",
                   help="M or F: for images whose sex neither --labels nor their DICOM "
                        "PatientSex gives")  # fmt: skip
    p.add_argument("--labels", nargs="+", metavar="CSV", default=[],
                   help="label CSVs (any RSNA schema; age may be empty) giving each image's "
                        "sex by case id")  # fmt: skip
    p.add_argument("--model", help="model file or run directory (default: the shipped model)")
    p.add_argument("--tta", type=int,
                   help="test-time augmentation copies to average (default: the number the "
                        "model file records, 0 if none)")  # fmt: skip
    p.add_argument("--explain", metavar="PNG_OR_FOLDER",
                   help="also draw each estimate's Grad-CAM heatmap over the prepared image: "
                        "a .png file for one image, else a folder (created) that gets "
                        "STEM.explain.png per image")  # fmt: skip
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON output instead of a table")
    fmt.add_argument("--csv", action="store_true", help="CSV output instead of a table")
    return p


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if _is_input(f))
        else:
            out.append(p)
    return out


def _is_input(path: Path) -> bool:
    """A folder entry to estimate: an image by name, or a file that starts like DICOM."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return path.is_file()
    return dicom.may_be_dicom(path.name) and dicom.file_is_dicom(path)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    return run_command(lambda: _predict(args))


def _predict(args: argparse.Namespace) -> int:
    paths = _expand(args.images)
    if not paths:  # an empty folder is a mistake to report, not an empty table to print
        raise ValueError(f"no images found in the inputs ({', '.join(args.images)})")
    fallback = parse_sex(args.sex) if args.sex is not None else None
    if args.sex is not None and fallback is None:
        raise ValueError(f"unknown --sex {args.sex!r}: use M or F")
    sexes = read_sexes(args.labels)
    explain_to = explain_targets(args.explain, paths) if args.explain else {}
    predictor = Predictor(args.model, tta=args.tta)
    results: list[Estimate] = []
    failed = 0
    for path in paths:
        try:
            sex = _labelled_sex(path, sexes)
            if path in explain_to:
                est = _explain(predictor, path, sex, fallback, explain_to[path])
            else:
                est = predictor.estimate(path, sex, default_male=fallback)
        except NoSexError as e:
            failed += 1
            print(f"error: {path}: {e}; add it to --labels or give --sex", file=sys.stderr)
            continue
        except (OSError, ValueError) as e:
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        results.append(est)
        for note in est.notes:
            print(f"note: {path}: {note}", file=sys.stderr)
    print(render(results, "json" if args.json else "csv" if args.csv else "table"))
    return 1 if failed else 0


def explain_targets(target: str, paths: list[Path]) -> dict[Path, Path]:
    """Where each image's heatmap goes: ``target`` itself for one image when it names a
    ``.png``, else ``target/STEM.explain.png`` (``STEM-2``... when names repeat).

    Decided before any work, so a ``.png`` given for several images fails at once rather
    than after the first estimate.
    """
    out = Path(target)
    if out.suffix.lower() == ".png" and not out.is_dir():
        if len(paths) > 1:
            raise ValueError(
                f"--explain {target}: {len(paths)} images need a folder, not one .png file"
            )
        return {paths[0]: out}
    targets: dict[Path, Path] = {}
    used: set[str] = set()
    for path in paths:
        stem, n = path.stem if path.suffix else path.name, 1
        name = f"{stem}.explain.png"
        while name in used:
            n += 1
            name = f"{stem}-{n}.explain.png"
        used.add(name)
        targets[path] = out / name
    return targets


def _explain(
    predictor: Predictor, path: Path, sex: int | None, fallback: int | None, out: Path
) -> Estimate:
    """The estimate, with its heatmap drawn over the prepared image and written to ``out``."""
    from boneage.inference.explain import overlay, png_bytes

    ex = predictor.explanation(path, sex, default_male=fallback)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(overlay(ex.prepared, ex.heatmap)))
    direction = "raised" if ex.direction > 0 else "lowered"
    print(
        f"explanation: {path} -> {out} (red: what {direction} the estimate from the model's "
        f"baseline of {ex.baseline_months:.0f} months)",
        file=sys.stderr,
    )
    return ex.estimate


def _labelled_sex(path: Path, sexes: SexTable) -> int | None:
    """The image's sex from the label files (by case id, as the bulk job matches), or None.
    A case whose rows are unusable is an error for that image, never a silent fallback."""
    cid = normalise_id(case_id(path.name))
    problem = sexes.problems.get(cid)
    if problem is not None:
        raise ValueError(f"case {cid}: {problem}")
    return sexes.male.get(cid)


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
