"""Bone age for radiographs: ``python -m boneage.predict IMAGE... --sex M|F`` and
:class:`Predictor` for other programs.

Images are PNG, JPEG or DICOM (recognised by content: ``.dcm``, no extension, a UID name).
Sex, the rule of every interface: ``--sex`` when given, else ``--labels`` (a label CSV of any
RSNA schema, matched by case id = file name without extension), else the DICOM's
``PatientSex``; a chosen sex that disagrees with ``PatientSex`` is printed as a note, and an
image with no sex is an error line for that image. The chronological age (``--age-months``,
an ``age_months`` column in ``--labels``, else the DICOM's) adds the delta and the SDS.

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
from pathlib import Path
from typing import Any

from boneage.cli import command_parser, quiet_native_logs, run_command
from boneage.inference import Estimate, NoSexError, Predictor
from boneage.inference.estimate import years_months_text
from boneage.inference.reference import REFERENCE, parse_age_months
from boneage.ingest import dicom
from boneage.ingest.labels import SexTable, normalise_id, read_sexes
from boneage.ingest.sources import IMAGE_SUFFIXES, case_id
from boneage.settings import parse_sex


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("predict", "Estimate bone age (months and years) from hand radiographs.")
    p.add_argument("images", nargs="+", help="PNG/JPEG/DICOM files or folders of them")
    p.add_argument("--sex",
                   help="M or F for every image: wins over --labels and the DICOM's "
                        "PatientSex (a disagreement with PatientSex is noted)")  # fmt: skip
    p.add_argument("--labels", nargs="+", metavar="CSV", default=[],
                   help="label CSVs (any RSNA schema; the bone-age column may be empty) giving "
                        "each image's sex by case id, and its chronological age in an optional "
                        "age_months column")  # fmt: skip
    p.add_argument("--age-months", type=float, metavar="N",
                   help="chronological age in months, for every image: adds the delta (bone "
                        "age minus age), the SDS against the Greulich & Pyle reference and "
                        "the normal range (else from --labels or the DICOM's dates)")  # fmt: skip
    p.add_argument("--model", help="model file or run directory (default: the shipped model)")
    p.add_argument("--tta", type=int,
                   help="test-time augmentation copies to average (default: the number the "
                        "model file records, 0 if none)")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="estimate images the input gate refuses as not hand radiographs, "
                        "with a warning note (the number may mean nothing)")  # fmt: skip
    p.add_argument("--no-orientation", action="store_true",
                   help="take every film as given instead of turning it upright (a left "
                        "hand, fingers up) first")  # fmt: skip
    p.add_argument("--explain", metavar="PNG_OR_FOLDER",
                   help="also draw each estimate's Grad-CAM heatmap over the prepared image: "
                        "a .png file for one image, else a folder (created) that gets "
                        "STEM.explain.png per image")  # fmt: skip
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON output instead of a table")
    fmt.add_argument("--csv", action="store_true", help="CSV output instead of a table")
    return p


def _expand(paths: list[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The images to estimate, and the folder entries that cannot be, each with its reason.

    Every non-hidden file or link found in a folder is one or the other, so that nothing a
    user put there is dropped without a word (a ``.tif`` among the films, a dangling link).
    Files named on the command line are taken as given: the reader names their problem.
    """
    out: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            out.append(p)
            continue
        for f in sorted(p.rglob("*")):
            if any(part.startswith(".") for part in f.relative_to(p).parts) or f.is_dir():
                continue
            problem = _input_problem(f)
            if problem is None:
                out.append(f)
            else:
                refused.append((f, problem))
    return out, refused


_PNG_OR_JPEG_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
"""How PNG and JPEG files start: a film exported without its extension is still read."""


def _input_problem(path: Path) -> str | None:
    """None for a folder entry to estimate (an image by name, or by content: DICOM, PNG or
    JPEG), else why it cannot be estimated, for its error line."""
    if path.is_symlink() and not path.exists():
        return "dangling link"
    if not path.is_file():
        return "not a regular file"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    if dicom.may_be_dicom(path.name) and dicom.file_is_dicom(path):
        return None
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if head.startswith(_PNG_OR_JPEG_MAGIC):
        return None
    if path.suffix:
        return f"unsupported image format {path.suffix.lower()} (PNG, JPEG or DICOM)"
    return "not a PNG, JPEG or DICOM image (no extension, and not one by content)"


def _error_text(path: Path, error: BaseException) -> str:
    """The exception's message without a leading repetition of the path, which the error
    line already names (else ``error: a.png: a.png: corrupt PNG``); an OSError about the
    file itself says just its reason (``No such file or directory``)."""
    if isinstance(error, OSError) and error.strerror and error.filename in (path, str(path)):
        return error.strerror
    text = str(error)
    for prefix in (f"{path}: ", f"{path.name}: ", f"{path}:", f"{path.name}:"):
        if text.startswith(prefix):
            return text[len(prefix) :].lstrip()
    return text


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    return run_command(lambda: _predict(args))


def _predict(args: argparse.Namespace) -> int:
    paths, refused = _expand(args.images)
    if not paths:  # an empty folder is a mistake to report, not an empty table to print
        found = f": {len(refused)} file(s) not PNG, JPEG or DICOM" if refused else ""
        raise ValueError(f"no images found in the inputs ({', '.join(args.images)}){found}")
    given = parse_sex(args.sex) if args.sex is not None else None
    if args.sex is not None and given is None:
        raise ValueError(f"unknown --sex {args.sex!r}: use M or F")
    if args.age_months is not None:
        parse_age_months(args.age_months)  # a bad age is a usage error, before any work
    sexes = read_sexes(args.labels)
    explain_to = explain_targets(args.explain, paths) if args.explain else {}
    predictor = Predictor(args.model, tta=args.tta, orientation=not args.no_orientation)
    for path, problem in refused:
        print(f"error: {path}: {problem}", file=sys.stderr)
    failed = len(refused)
    fmt = "json" if args.json else "csv" if args.csv else "table"
    # The age columns are decided before the first row is printed: an age can come from
    # --age-months, the label files or a DICOM's own dates (any input DICOM may be by name).
    with_age = (
        args.age_months is not None
        or bool(args.labels)
        or any(dicom.may_be_dicom(p.name) for p in paths)
    )
    out = _Stream(fmt, with_age)
    progress = _progress(len(paths), len(paths) > 1 and sys.stderr.isatty())
    out.begin()
    try:
        for path in paths:
            try:
                labelled, labelled_age = _labelled(path, sexes)
                age = args.age_months if args.age_months is not None else labelled_age
                if path in explain_to:
                    est = _explain(
                        predictor, path, (given, labelled), age, args.force, explain_to[path]
                    )
                else:
                    est = predictor.estimate(
                        path, given, labelled_male=labelled, age_months=age, force=args.force
                    )
            except NoSexError as e:
                failed += 1
                progress.write(
                    f"error: {path}: {_error_text(path, e)}; add it to --labels or give --sex",
                    file=sys.stderr,
                )
                continue
            except (OSError, ValueError) as e:
                failed += 1
                progress.write(f"error: {path}: {_error_text(path, e)}", file=sys.stderr)
                continue
            finally:
                progress.update(1)
            for note in est.notes:
                progress.write(f"note: {path}: {note}", file=sys.stderr)
            out.row(est)
    except KeyboardInterrupt:
        progress.close()
        out.end()  # what was estimated stays: the JSON array is closed, still valid
        print("interrupted", file=sys.stderr)
        return 130
    progress.close()
    out.end()
    return 1 if failed else 0


def _progress(total: int, enabled: bool) -> Any:
    """A progress bar on stderr (as ``boneage.preprocess`` shows), only where stderr is a
    terminal so that logs and pipes get none; its ``write`` keeps messages off the bar."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="predict", disable=not enabled, smoothing=0.1)


class _Stream:
    """Prints each estimate as soon as it is made (flushed), so that an interrupted run over
    many images keeps what it finished: the table's or CSV's header first, then one row per
    image; JSON as an array opened at once, one object per line, closed by :meth:`end`."""

    def __init__(self, fmt: str, with_age: bool) -> None:
        self.fmt = fmt
        self.with_age = with_age
        self.count = 0
        self.marked = False

    def _print(self, text: str) -> None:
        print(text, flush=True)

    def begin(self) -> None:
        if self.fmt == "json":
            self._print("[")
        elif self.fmt == "csv":
            self._print(_csv_line(CSV_COLUMNS))
        else:
            self._print(table_header(self.with_age))

    def row(self, est: Estimate) -> None:
        if self.fmt == "json":
            text = json.dumps(est.to_dict())
            self._print(text if self.count == 0 else "," + text)
        elif self.fmt == "csv":
            self._print(_csv_line(_csv_row(est)))
        else:
            line, marked = table_row(est, self.with_age)
            self.marked |= marked
            self._print(line)
        self.count += 1

    def end(self) -> None:
        if self.fmt == "json":
            self._print("]")
        elif self.fmt == "table":
            footer = table_footer(self.marked, self.with_age)
            if footer:
                self._print(footer)


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
    predictor: Predictor,
    path: Path,
    sexes: tuple[int | None, int | None],
    age: float | None,
    force: bool,
    out: Path,
) -> Estimate:
    """The estimate, with its heatmap drawn over the prepared image and written to ``out``."""
    from boneage.inference.explain import overlay, png_bytes

    sex, labelled = sexes
    ex = predictor.explanation(path, sex, labelled_male=labelled, age_months=age, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(overlay(ex.prepared, ex.heatmap)))
    direction = "raised" if ex.direction > 0 else "lowered"
    print(
        f"explanation: {path} -> {out} (red: what {direction} the estimate from the model's "
        f"baseline of {ex.baseline_months:.0f} months)",
        file=sys.stderr,
    )
    return ex.estimate


def _labelled(path: Path, sexes: SexTable) -> tuple[int | None, float | None]:
    """The image's sex and chronological age from the label files (by case id, as the bulk
    job matches), or None. A case whose rows are unusable is an error for that image, never
    a silent fallback."""
    cid = normalise_id(case_id(path.name))
    problem = sexes.problems.get(cid)
    if problem is not None:
        raise ValueError(f"case {cid}: {problem}")
    return sexes.male.get(cid), sexes.age_months.get(cid)


CSV_COLUMNS = (
    "source", "sex", "bone_age_months", "interval_90_lo", "interval_90_hi", "age_months",
    "delta_months", "sds", "within_normal_range", "orientation", "localiser", "notes",
)  # fmt: skip
"""The CSV output's columns: the JSON schema's, flattened (see Estimate.to_dict)."""


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _csv_row(r: Estimate) -> list[str]:
    d = r.to_dict()
    lo, hi = d["interval_90_months"] or (None, None)
    d.update(interval_90_lo=lo, interval_90_hi=hi, notes="; ".join(d["notes"]))
    return [_cell(d[c]) for c in CSV_COLUMNS]


def _csv_line(cells: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue().rstrip("\r\n")


def render(results: list[Estimate], fmt: str) -> str:
    """The estimates as JSON (:meth:`Estimate.to_dict`, the API's schema), CSV or a table."""
    if fmt == "json":
        return json.dumps([r.to_dict() for r in results], indent=2)
    if fmt == "csv":
        return "\n".join([_csv_line(CSV_COLUMNS)] + [_csv_line(_csv_row(r)) for r in results])
    return table(results)


def table(results: list[Estimate]) -> str:
    """A reader's table: bone age in years and months, its 90 % interval, and with an age the
    delta and the SDS ("*" marks a delta inside the model's own interval)."""
    with_age = any(r.age is not None for r in results)
    lines = [table_header(with_age)]
    marked = False
    for r in results:
        line, mark = table_row(r, with_age)
        lines.append(line)
        marked |= mark
    footer = table_footer(marked, with_age)
    return "\n".join(lines + ([footer] if footer else []))


def table_header(with_age: bool) -> str:
    """The table's header; the columns are fixed by it, so rows can follow one at a time."""
    head = f"{'image':<32} {'sex':>3} {'bone age':>9} {'90% interval':>21}"
    if with_age:
        head += f" {'age':>10} {'delta':>7} {'SDS':>6}"
    return head + "  orientation"


def table_row(r: Estimate, with_age: bool) -> tuple[str, bool]:
    """One estimate's table line, and whether its delta carries the "*" mark."""
    iv = r.interval_90_months
    interval = "" if iv is None else f"{years_months_text(iv[0])} - {years_months_text(iv[1])}"
    line = (
        f"{Path(r.source).name[:32]:<32} {'M' if r.male else 'F':>3} "
        f"{years_months_text(r.bone_age_months):>9} {interval:>21}"
    )
    marked = False
    if with_age:
        a = r.age
        if a is None:
            line += f" {'':>10} {'':>7} {'':>6}"
        else:
            mark = "*" if a.within_interval else " "
            marked = mark == "*"
            line += (
                f" {years_months_text(a.age_months):>10} {a.delta_months:+6.1f}{mark} {a.sds:+6.2f}"
            )
    return f"{line}  {r.orientation}", marked


def table_footer(marked: bool, with_age: bool) -> str:
    """The notes under the table (empty when it has none)."""
    lines = []
    if marked:
        lines.append(
            "* the age lies inside the model's 90 % interval: the delta is within its error"
        )
    if with_age:
        lines.append(f"SDS against the {REFERENCE.name}; normal: |SDS| <= 2")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
