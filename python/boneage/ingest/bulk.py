"""The bulk job: archives in, training-ready shards and a manifest out.

Work is cut into *parts* of consecutive input files. Each part is decoded, localised and
preprocessed (the expensive bit) and saved under ``OUT/.work`` as one TFRecord plus its
manifest rows, atomically. ``--resume`` skips finished parts, so an interrupted run loses at
most one part. When every part is done, the parts are streamed in order into the final
shards (cheap), so a resumed run writes exactly the shards an uninterrupted one would.
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from boneage import _native as native
from boneage.ingest import dicom, hands
from boneage.ingest.labels import LabelTable, read_labels
from boneage.ingest.preparation import squash
from boneage.ingest.sources import Item, check_inputs, count_items, iter_items, read_regular
from boneage.ingest.splits import stratified_split, val_from_train
from boneage.settings import Preprocessing

MANIFEST_COLUMNS = [
    "id", "split", "source", "status", "reason", "localiser",
    "x0", "y0", "x1", "y1", "width", "height", "male", "age", *dicom.MANIFEST_FIELDS,
]  # fmt: skip
RECORDS_PER_SHARD = 1000
JOB_FILE = "job.json"
"""The options besides the preprocessing settings that shape a run's output, in OUT/.work."""


@dataclass
class Options:
    inputs: list[str]
    out: str
    labels: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    """How every image is prepared (validated by its type), written next to the shards."""
    engine: str = "native"
    shards: int = 0
    compression: str | None = None
    split_by: dict[str, float] | None = None
    seed: int = 0
    val_fraction: float = 0.0
    keep_copies: bool = False
    """Every copy of a case (the same film at other sizes) becomes its own record, in the
    case's one split, instead of the first copy only (see ``--keep-copies``)."""
    workers: int = 0
    resume: bool = False
    part_size: int = 256
    keep_work: bool = False
    sheet: int = 60
    max_pixels: int = 100_000_000
    progress: bool = True


@dataclass
class Summary:
    total: int = 0
    ok: int = 0
    skipped: int = 0
    per_split: dict[str, int] = field(default_factory=dict)
    localisers: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_s: float = 0.0
    shards: dict[str, Any] = field(default_factory=dict)
    parts_resumed: int = 0


def _row(
    item_source: str, case_id: str, split: str, status: str, reason: str = ""
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(MANIFEST_COLUMNS, "")
    row.update(id=case_id, split=split, source=item_source, status=status, reason=reason)
    if status != "ok":
        row["localiser"] = "none"
    return row


def _reason_key(reason: str) -> str:
    """Groups reasons for the summary (paths and numbers removed)."""
    head = reason.split(" (")[0]
    if ": " in head:
        head = head.rsplit(": ", 1)[-1]
    return head[:80]


class Job:
    """One bulk run; see the module docstring."""

    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.pp = opts.preprocessing
        self.out = Path(opts.out)
        self.work = self.out / ".work"
        self.table: LabelTable = read_labels(opts.labels)
        self.splits: dict[str, str] = {}
        if opts.split_by:
            self.splits = stratified_split(
                list(self.table.labels.values()), opts.split_by, opts.seed
            )
        elif opts.val_fraction:
            self.splits = val_from_train(
                list(self.table.labels.values()), opts.val_fraction, opts.seed
            )
        self.workers = opts.workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        self.sheet: list[tuple[np.ndarray, tuple[int, int, int, int], str, str]] = []

    # -- per item bookkeeping -------------------------------------------------------------
    def split_of(self, case_id: str) -> str:
        if case_id in self.splits:
            return self.splits[case_id]
        label = self.table.get(case_id)
        if label is None:
            return "unlabeled"
        return label.split or "train"

    def duplicate_reason(self, case_id: str, seen: dict[str, str]) -> str:
        """Why this copy of ``case_id`` is no record ("" when it may be one): another copy
        took the id already (``seen`` maps taken ids to their source), unless
        ``--keep-copies`` makes every copy a record. The one place the rule lives."""
        if self.o.keep_copies or case_id not in seen:
            return ""
        return f"duplicate id (first: {seen[case_id]})"

    def fill_label(self, row: dict[str, Any], info: dicom.DicomInfo | None = None) -> None:
        """The row's label; with none, a DICOM's ``PatientSex`` still gives ``male``."""
        label = self.table.get(row["id"])
        if label is not None:
            row["male"], row["age"] = label.male, label.age_months
        elif info is not None and info.male is not None:
            row["male"] = info.male

    def job_record(self) -> dict[str, Any]:
        """What besides the preprocessing settings decides this run's output: the parts
        (inputs, part size), the labels (by content), the splits, the shards, the pixel
        limit and the engine. A resumed run must agree with it, or its finished parts would
        be mixed with parts made differently."""
        o = self.o
        return {
            "inputs": [os.path.realpath(p) for p in o.inputs],
            "labels": [{"path": os.path.realpath(p), "sha256": _sha256(p)} for p in o.labels],
            "split_by": o.split_by,
            "val_fraction": o.val_fraction,
            "keep_copies": o.keep_copies,
            "seed": o.seed,
            "shards": o.shards,
            "compression": o.compression,
            "part_size": o.part_size,
            "max_pixels": o.max_pixels,
            "engine": o.engine,
        }

    def check_resume(self, record: dict[str, Any]) -> None:
        """Refuses a ``--resume`` whose options differ from the interrupted run's."""
        stored = Preprocessing.read(self.work)
        if stored is not None and stored != self.pp:
            raise ValueError(
                f"{self.out}: --resume with other preprocessing settings than the "
                f"interrupted run ({stored.to_dict()}); repeat its flags or start afresh"
            )
        path = self.work / JOB_FILE
        if not path.is_file():
            return
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: unreadable record of the interrupted run ({e})") from e
        diffs = _differences(before, record)
        if diffs:
            raise ValueError(
                f"{self.out}: --resume with options that differ from the interrupted run: "
                f"{'; '.join(diffs)}. Repeat its options, or start afresh without --resume"
            )

    # -- the run --------------------------------------------------------------------------
    def run(self) -> Summary:
        start = time.perf_counter()
        check_inputs(self.o.inputs)
        record = self.job_record()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.o.resume:
            self.check_resume(record)
        if self.work.exists() and not self.o.resume:
            shutil.rmtree(self.work)
        self.work.mkdir(exist_ok=True)
        self.pp.write(self.work)
        _write_json(self.work / JOB_FILE, record)
        summary = Summary()
        total = count_items(self.o.inputs)
        bar = _progress(total, self.o.progress)
        seen: dict[str, str] = {}
        ok_so_far = 0
        try:
            for p, part in enumerate(_chunks(iter_items(self.o.inputs), self.o.part_size)):
                done = self.work / f"part-{p:05d}.csv"
                if self.o.resume and done.exists():
                    rows = _read_csv(done)
                    summary.parts_resumed += 1
                    for r in rows:
                        if _claims(r):
                            seen.setdefault(r["id"], r["source"])
                else:
                    rows = self.process_part(p, part, seen)
                ok_so_far += sum(r["status"] == "ok" for r in rows)
                bar.update(len(rows))
                bar.set_postfix(ok=ok_so_far, skipped=bar.n - ok_so_far, refresh=False)
        finally:
            bar.close()
            if self._pool is not None:
                self._pool.shutdown()
        self.finalise(summary)
        summary.seconds = time.perf_counter() - start
        summary.images_per_s = summary.ok / summary.seconds if summary.seconds else 0.0
        (self.out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
        return summary

    def process_part(self, p: int, items: list[Item], seen: dict[str, str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        todo: list[tuple[int, Item, bytes]] = []
        infos: dict[int, dicom.DicomInfo] = {}
        for item in items:
            split = self.split_of(item.case_id) if item.case_id else ""  # "": a whole archive
            row = _row(item.source, item.case_id, split, "skipped")
            rows.append(row)
            if item.skip:  # a link, FIFO, hidden file, damaged member: never read
                row["reason"] = item.skip
                continue
            if not item.is_image and not dicom.may_be_dicom(item.source):
                row["reason"] = f"not an image ({Path(item.source).suffix or 'no extension'})"
                continue
            problem = self.table.problems.get(item.case_id)
            if problem is not None:
                row["reason"] = f"bad label: {problem.reason} ({problem.source})"
                continue
            duplicate = self.duplicate_reason(item.case_id, seen)
            if duplicate:
                row["reason"] = duplicate
                continue
            # The id is claimed only once this file has become a record (below): a copy that
            # fails to decode must not shut out a later good copy of the same case.
            try:
                data = item.read()
            except OSError as e:
                row["reason"] = f"unreadable: {e}"
                continue
            if dicom.is_dicom(data):
                decoded = self.from_dicom(data, row)
                if decoded is None:
                    continue
                data, infos[len(todo)] = decoded
            elif not item.is_image:
                suffix = Path(item.source).suffix or "no extension"
                row["reason"] = f"not an image ({suffix}, not DICOM)"
                continue
            todo.append((len(rows) - 1, item, data))

        results = self.localise_and_preprocess(
            [d for _, _, d in todo], [i.source for _, i, _ in todo]
        )
        tmp = self.work / f"part-{p:05d}"
        writer = native.ShardWriter(str(self.work), f"part-{p:05d}", 1)
        try:
            for k, ((ri, item, data), res) in enumerate(zip(todo, results, strict=True)):
                row = rows[ri]
                if isinstance(res, str):
                    row["reason"] = res
                    continue
                duplicate = self.duplicate_reason(item.case_id, seen)  # taken earlier in this part?
                if duplicate:
                    row["reason"] = duplicate
                    continue
                seen[item.case_id] = item.source
                image, info = res
                x0, y0, x1, y1 = info["box"]
                row.update(
                    status="ok", localiser=info["localiser"], x0=x0, y0=y0, x1=x1, y1=y1,
                    width=info["width"], height=info["height"],
                )  # fmt: skip
                self.fill_label(row, infos.get(k))
                label = self.table.get(item.case_id)
                writer.write(
                    image,
                    item.case_id,
                    male=None if row["male"] == "" else int(row["male"]),
                    age=None if label is None else label.age_months,
                    split=row["split"],
                    source=item.source,
                    localiser=info["localiser"],
                    box=[int(x0), int(y0), int(x1), int(y1)],
                    source_size=[int(info["width"]), int(info["height"])],
                )
                if len(self.sheet) < self.o.sheet:
                    self.sheet.append(self.thumbnail(data, info, item.case_id))
        finally:
            writer.close()
        _write_csv(tmp.with_suffix(".csv"), rows)  # the part's "done" marker, written last
        return rows

    def from_dicom(self, data: bytes, row: dict[str, Any]) -> tuple[bytes, dicom.DicomInfo] | None:
        """A DICOM input as the lossless PNG of its display image, so that from here on it
        takes the path every PNG takes; None (the row says why) when it cannot be read.
        The row gets the DICOM-derived manifest columns either way."""
        try:
            image = dicom.read_dicom(data, self.o.max_pixels)
        except dicom.DicomError as e:
            row.update(e.fields)
            row["reason"] = f"bad DICOM: {e}"
            return None
        row.update(image.info.manifest_fields())
        return dicom.png_bytes(image.pixels), image.info

    def thumbnail(
        self, data: bytes, info: dict[str, Any], case_id: str
    ) -> tuple[np.ndarray, Any, str, str]:
        img = native.decode_gray(data, self.o.max_pixels)
        h, w = img.shape
        s = min(1.0, 200 / max(h, w))
        small = native.resize_area(img, max(1, round(w * s)), max(1, round(h * s)))
        box = tuple(round(v * s) for v in info["box"])
        return small, box, case_id, info["localiser"]

    # -- engines --------------------------------------------------------------------------
    def localise_and_preprocess(self, datas: list[bytes], labels: list[str]) -> list[Any]:
        """Per item: (image, info) or an error message. Runs the chosen engine and localiser."""
        if not datas:
            return []
        o, pp = self.o, self.pp
        if pp.mode == "squash":
            return self.squash_all(datas)
        if o.engine == "native" and pp.localiser in ("native", "none"):
            localiser = cast("Literal['native', 'none']", pp.localiser)
            imgs, infos, errors = native.process_encoded(
                [bytes(d) for d in datas], labels, localiser, pp.image_size, pp.clip_limit,
                pp.tile_grid, hands.MARGIN, None, o.max_pixels,
            )  # fmt: skip
            out: list[Any] = [(imgs[i], infos[i]) for i in range(len(datas))]
            for i, _, reason in errors:
                out[i] = reason
            return out
        decoded = self.decode(datas)
        good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
        images = [decoded[i] for i in good]
        marks = (
            self.mediapipe(images)
            if pp.localiser in ("mediapipe", "auto")
            else [None] * len(images)
        )
        found = [
            hands.choose(img, pp.localiser, landmarks=m)
            for img, m in zip(images, marks, strict=True)
        ]
        crops = [f.box for f in found]
        if o.engine == "native":
            batch, errors = native.preprocess_batch(
                images, crops, pp.image_size, pp.clip_limit, pp.tile_grid
            )
            pre: list[Any] = list(batch)
            for i, _, reason in errors:
                pre[i] = reason
        else:
            from boneage.ingest import reference

            pre = [
                reference.preprocess(img, c, pp.image_size, pp.clip_limit, pp.tile_grid)
                for img, c in zip(images, crops, strict=True)
            ]
        out = list(decoded)
        for k, i in enumerate(good):
            if isinstance(pre[k], str):
                out[i] = pre[k]
                continue
            h, w = images[k].shape
            out[i] = (
                pre[k],
                {"box": crops[k], "localiser": found[k].localiser, "width": w, "height": h},
            )
        return out

    def squash_all(self, datas: list[bytes]) -> list[Any]:
        """The ``squash`` mode: whole films resized to squares, then CLAHE (no localiser)."""
        out = self.decode(datas)
        for i, img in enumerate(out):
            if isinstance(img, str):
                continue
            h, w = img.shape
            try:
                if self.o.engine == "native":
                    pre = squash(img, self.pp)
                else:
                    from boneage.ingest import reference

                    pre = reference.squash(img, self.pp)
            except ValueError as e:
                out[i] = str(e)
                continue
            out[i] = (pre, {"box": (0, 0, w, h), "localiser": "none", "width": w, "height": h})
        return out

    def decode(self, datas: list[bytes]) -> list[Any]:
        if self.o.engine == "native":
            images, errors = native.decode_many([bytes(d) for d in datas], None, self.o.max_pixels)
            out: list[Any] = list(images)
            for i, _, reason in errors:
                out[i] = reason
            return out
        from boneage.ingest import reference

        out = []
        for d in datas:
            try:
                out.append(reference.decode_gray(d))
            except OSError as e:
                out.append(str(e))
        return out

    def mediapipe(self, images: list[np.ndarray]) -> list[Any]:
        """Landmarks for each image, from MediaPipe in worker processes."""
        small = []
        for img in images:
            h, w = img.shape
            s = min(1.0, hands.MEDIAPIPE_SIDE / max(h, w))
            small.append(native.resize_area(img, max(1, round(w * s)), max(1, round(h * s))))
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        return list(self._pool.map(_landmarks, small, chunksize=4))

    # -- the end --------------------------------------------------------------------------
    def finalise(self, summary: Summary) -> None:
        rows: list[dict[str, Any]] = []
        parts = sorted(self.work.glob("part-*.csv"))
        for part in parts:
            rows += _read_csv(part)
        rows += self.rows_without_image({r["id"] for r in rows if r["id"]})

        counts = Counter(r["split"] for r in rows if r["status"] == "ok")
        compression = cast("Literal['GZIP'] | None", self.o.compression)  # the writer checks it
        writers = {
            split: native.ShardWriter(str(self.out), split, self.num_shards(n), compression)
            for split, n in sorted(counts.items())
        }  # fmt: skip
        try:
            for part in parts:
                tfr = sorted(self.work.glob(native.shard_glob(part.stem)))
                for ex in native.read_examples([str(t) for t in tfr]):
                    rewrite(writers[ex["split"]], ex)
        finally:
            for split, w in writers.items():
                summary.shards[split] = w.close()
        self.publish(summary, rows, counts)

    # The pieces of finalise that the Beam engine (ingest.beam) shares, so both engines end
    # with the same manifest, summary and preprocessing.json by construction.
    def rows_without_image(self, seen: set[str]) -> list[dict[str, Any]]:
        """Manifest rows for label lines no input matched (``seen``: the ids that had one):
        "label without image", or the label's own problem."""
        rows: list[dict[str, Any]] = []
        for cid, label in self.table.labels.items():
            if cid not in seen:
                row = _row(label.source, cid, self.split_of(cid), "skipped", "label without image")
                self.fill_label(row)
                rows.append(row)
        for cid, problem in self.table.problems.items():
            if cid not in seen:
                rows.append(
                    _row(problem.source, cid, "", "skipped", f"bad label: {problem.reason}")
                )
        return rows

    def num_shards(self, records: int) -> int:
        """Shards for a split of ``records`` cases: ``--shards``, else one per ~1000."""
        return self.o.shards or max(1, math.ceil(records / RECORDS_PER_SHARD))

    def publish(self, summary: Summary, rows: list[dict[str, Any]], counts: Counter[str]) -> None:
        """After the shards (``summary.shards`` filled): stale shards removed, settings,
        manifest, the summary's tallies and the contact sheet written, the work folder
        dropped."""
        _remove_stale_shards(self.out, summary.shards)
        self.pp.write(self.out)
        _write_csv(self.out / "manifest.csv", rows)
        summary.total = len(rows)
        summary.ok = sum(r["status"] == "ok" for r in rows)
        summary.skipped = summary.total - summary.ok
        summary.per_split = dict(sorted(counts.items()))
        summary.localisers = dict(Counter(r["localiser"] for r in rows if r["status"] == "ok"))
        summary.reasons = dict(
            Counter(_reason_key(r["reason"]) for r in rows if r["status"] != "ok")
        )
        if self.sheet:
            from boneage.ingest.contact import contact_sheet

            imgs, boxes, labels, locs = zip(*self.sheet, strict=True)
            contact_sheet(imgs, boxes, labels, locs, self.out / "contact_sheet.png")
        if not self.o.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)


def rewrite(writer: native.ShardWriter, ex: dict[str, Any]) -> None:
    """Writes a decoded part record into a final shard with every field it had. Both engines
    move records from the worker's output to the final shards through this, which is what
    makes their shard files byte-identical."""
    extras = {
        k: v for k, v in ex.items() if k not in ("image", "id", "male", "age", "height", "width")
    }
    writer.write(ex["image"], ex["id"], ex.get("male"), ex.get("age"), **extras)


def _claims(row: dict[str, Any]) -> bool:
    """Whether a manifest row took its id (later files with that id are duplicates): only a
    record does, so a damaged or undecodable first copy leaves the id to a later good one."""
    return row["status"] == "ok" and bool(row["id"])


def _sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(read_regular(path)).hexdigest()


def _differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human-readable differences between two job records (see ``Job.job_record``)."""
    diffs = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if key == "labels" and isinstance(old, list) and isinstance(new, list):
            old_files = [(d.get("path"), d.get("sha256")) for d in old if isinstance(d, dict)]
            new_files = [(d["path"], d["sha256"]) for d in new]
            if [h for _, h in old_files] != [h for _, h in new_files]:
                paths = [p for p, _ in new_files]
                if [p for p, _ in old_files] == paths:
                    pairs = zip(old_files, new_files, strict=True)
                    changed = [p for (_, a), (p, b) in pairs if a != b]  # same paths both
                    diffs.append(f"label file content changed ({', '.join(changed)})")
                else:
                    was = [p for p, _ in old_files]
                    diffs.append(f"labels {was} -> {paths}")
        elif old != new:
            diffs.append(f"{key} {old!r} -> {new!r}")
    return diffs


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def _remove_stale_shards(out: Path, written: dict[str, Any]) -> None:
    """Drops shard files an earlier run left here that this run did not rewrite."""
    keep = {Path(s["path"]).name for summary in written.values() for s in summary["shards"]}
    for path in out.glob(native.shard_glob()):
        if path.name not in keep:
            path.unlink()


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    """Groups items; a group's data must be read before the next group is produced (streams)."""
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _progress(total: int | None, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="preprocess", disable=not enabled, smoothing=0.1)


_DETECTOR: hands.MediaPipeHands | None = None


PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal this process gets when its parent dies."""


def _die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Makes a worker exit when the bulk process that started it dies.

    A ``kill -9`` of the bulk run gives the pool no chance to stop its workers, and a
    MediaPipe worker would otherwise live on, orphaned, holding memory and cores. On Linux
    the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``); everywhere, a
    daemon thread also watches ``os.getppid()`` (the kernel request is tied to the parent
    *thread*, and other systems have none). Checked once up front too: the parent may have
    died before this ran.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher thread below still covers it
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="boneage-parent-watch", daemon=True).start()


def _init_worker(parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    global _DETECTOR
    _DETECTOR = hands.MediaPipeHands()


def _landmarks(img: np.ndarray) -> Any:
    assert _DETECTOR is not None
    return _DETECTOR.landmarks(img)


def run(opts: Options) -> Summary:
    return Job(opts).run()
