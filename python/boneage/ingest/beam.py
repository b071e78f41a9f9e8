"""The bulk job as an Apache Beam pipeline: ``python -m boneage.preprocess ... --engine beam``.

The local engine (:mod:`boneage.ingest.bulk`) stops at one machine. This runs the same job on
any Beam runner (the DirectRunner here; Flink, Spark or Dataflow on a cluster) and ends with
the same files: the same shards, byte for byte, the same ``manifest.csv``, ``summary.json``
(timing aside) and ``preprocessing.json``. Only this module imports ``apache_beam``, and only
``--engine beam`` imports this module (``pip install 'boneage[beam]'``).

What runs where:

1. **Driver**: lists the inputs with :func:`~boneage.ingest.sources.iter_items` (folders,
   files, zip and tar members) and cuts them into *parts* of ``--part-size`` consecutive
   items, exactly as the local engine does. An element is a part of :class:`Ref` descriptors,
   never image bytes: a file is found again by its path; an archive member by (archive path,
   position in that archive's listing), the worker re-listing the archive itself. Zip members
   are then read directly (a zip has an index); a tar has none, so a worker streams it from
   the start up to the part's members (cheap for folders and zips; for a large tar, prefer a
   large ``--part-size`` or a zip). The label CSVs are read once, here, and travel inside the
   pickled :class:`~boneage.ingest.bulk.Job`, so workers need not see them.
2. **Workers, per part** (:class:`_ProcessPart`): the local engine's own
   :meth:`~boneage.ingest.bulk.Job.process_part` in a scratch folder: every per-item rule
   (screening, DICOM, decode, localiser, ``boneage._native`` preprocessing, labels, record
   fields) is the local engine's by construction. Its rows and records become elements.
3. **Duplicates across parts**: the local engine gives an id to its first copy that became
   a record and marks later copies "duplicate id" (copies in a later part are then never
   read). Ids whose copies fall in more than one part (known from the listing) are grouped
   by id and settled the same way (:func:`_settle`); every other item passes straight on.
4. **Shards**: each record is keyed by (split, shard count, ``native.shard_index(id, n)``),
   the FNV-1a hash the ``ShardWriter`` itself uses, so both engines put a case in the same
   shard; the shard count comes from the per-split record counts (a side input). After the
   ``GroupByKey`` one call (:class:`_WriteShard`) writes each shard with a native writer
   owning only that shard, records in input order, as the local engine writes them: the
   files are byte-identical.
5. **Driver again**: the rows (in input order, then the label-only rows), empty shards,
   manifest, summary, ``preprocessing.json`` and contact sheet, through the local engine's
   :meth:`~boneage.ingest.bulk.Job.publish`.

Retries: a runner retries a failed bundle and keeps only the output of the attempt that
succeeded. A part's output is a pure function of its input (its scratch folder is private to
the attempt). A shard is written whole, from its complete group, into a hidden temporary
that is renamed to its final name only when complete: a retried bundle rewrites and renames
again (overwriting, never appending), and a killed attempt leaves at most a hidden temporary,
which the driver removes at the end. So a retry neither duplicates nor loses a record. (The
Python DirectRunner in ``multi_processing`` mode does not retry: a failed bundle fails the
job; its ``BundleBasedDirectRunner``, Dataflow, Flink and Spark do. See
:data:`FAIL_ONCE_ENV` for the hook the tests use.)

Differences from the local engine: no ``--resume`` (the runner owns retries; a rerun starts
afresh), no progress bar, and the contact sheet shows the first ``--contact-sheet`` records
among the first ``--contact-sheet`` *inputs* (the local engine: the first records at all; they
differ only when some of those first inputs were skipped), so that no part decodes a film
twice for thumbnails it will not need.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

try:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.pvalue import AsDict, AsList
except ImportError as e:  # the CLI checks first; this is for direct importers
    raise ImportError(
        "the Beam engine needs Apache Beam, an optional extra: pip install 'boneage[beam]'"
    ) from e

from boneage import _native as native
from boneage.ingest.bulk import Job, Options, Summary, rewrite
from boneage.ingest.sources import Item, check_inputs, is_archive, iter_items, read_regular

FAIL_ONCE_ENV = "BONEAGE_BEAM_FAIL_ONCE"
"""Test hook: ``process:MARKER`` and/or ``write:MARKER`` (comma-separated). The first bundle of
that step to get there creates the marker file and raises midway (after some output), once per
marker; retries then find the marker and go through. It shows a runner's retry gives the
clean run's output."""

RESULT = "beam-result.pickle"
"""Where the pipeline's last step leaves the rows and shard summaries for the driver, in
OUT/.work."""

_CLAIMED = "\x00claimed"
"""Stands in for the source of a copy that took an id, when a worker asks the local engine how
it would mark a later copy (see :meth:`_ProcessPart.claimed_rows`)."""

_NEEDS_VALUE = ("--runner", "--direct_running_mode", "--direct_num_workers")


@dataclasses.dataclass(frozen=True)
class Ref:
    """One input entry as the driver lists it: what a worker needs to find it again."""

    ordinal: int
    """Position in the whole listing (the local engine's processing order)."""
    source: str
    case_id: str
    is_image: bool
    skip: str
    """Non-empty: never read; the reason for its manifest row (see ``sources.Item``)."""
    archive: str = ""
    """The archive input it is a member of; "" for a file on disk (read by ``source``)."""
    index: int = 0
    """Its position in ``iter_items([archive])``."""
    spread: bool = False
    """Its id has copies in more than one part: the copies are settled together."""
    later: bool = False
    """A copy of its id sits in an earlier part: it is a duplicate if that one took the id."""


@dataclasses.dataclass
class Outcome:
    """What a worker made of one item: its manifest row and, when it became one, its record."""

    ordinal: int
    part: int
    ref: Ref
    row: dict[str, Any]
    claimed_row: dict[str, Any] | None = None
    """Its row if an earlier part had taken its id (None: screened out before that check)."""
    record: bytes | None = None
    thumb: tuple[Any, ...] | None = None


# -- the driver's listing ------------------------------------------------------------------


def _is_archive_input(raw: str) -> bool:
    """Whether ``iter_items`` opens this input as an archive (its own test, on the target)."""
    path = Path(raw)
    return path.is_file() and (path.name.lower().endswith(".zip") or is_archive(path))


def list_parts(inputs: Sequence[str], part_size: int) -> list[tuple[int, list[Ref]]]:
    """The inputs as parts of :class:`Ref`, as the local engine cuts them. Tar members are
    read here too (a tar can only be streamed), but only their names are kept."""
    refs: list[Ref] = []
    for raw in inputs:
        archive = str(raw) if _is_archive_input(raw) else ""
        for index, item in enumerate(iter_items([raw])):
            refs.append(
                Ref(len(refs), item.source, item.case_id, item.is_image, item.skip,
                    archive, index)
            )  # fmt: skip
    parts_of: dict[str, set[int]] = defaultdict(set)
    for r in refs:
        if r.case_id:
            parts_of[r.case_id].add(r.ordinal // part_size)
    first = {cid: min(ps) for cid, ps in parts_of.items() if len(ps) > 1}
    refs = [
        dataclasses.replace(
            r, spread=True, later=r.ordinal // part_size > first[r.case_id]
        ) if r.case_id in first else r
        for r in refs
    ]  # fmt: skip
    return [(p, refs[s : s + part_size]) for p, s in enumerate(range(0, len(refs), part_size))]


# -- the workers -----------------------------------------------------------------------------


def _failing(message: str) -> Any:
    def fail() -> bytes:
        raise OSError(message)

    return fail


def _never_read() -> bytes:
    raise RuntimeError("a copy of a claimed id was read: the local engine's rules changed?")


class _Finder:
    """Finds a listed entry again in a worker: files by path, archive members by re-listing
    their archive (kept open between parts; restarted only to go backwards)."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Iterator[Item], int]] = {}

    def item(self, ref: Ref) -> Item:
        if ref.skip:
            return Item(ref.source, ref.case_id, ref.is_image, _failing(ref.skip), ref.skip)
        if not ref.archive:
            source = ref.source
            return Item(source, ref.case_id, ref.is_image, lambda: read_regular(source))
        found = self._member(ref.archive, ref.index)
        if found is None or found.source != ref.source:
            reason = "archive changed while the job ran (member not found again)"
            return Item(ref.source, ref.case_id, ref.is_image, _failing(reason), reason)
        return found

    def _member(self, archive: str, index: int) -> Item | None:
        it, pos = self._open.get(archive, (None, 0))
        if it is None or index < pos:
            it, pos = iter(iter_items([archive])), 0
        item = None
        while pos <= index:
            item = next(it, None)
            pos += 1
            if item is None:
                break
        self._open[archive] = (it, pos)
        return item


def _gzip(compression: str | None) -> Literal["GZIP"] | None:
    """``Options.compression`` as the writer's type ("GZIP" or None)."""
    return "GZIP" if compression == "GZIP" else None


def _fail_once(step: str) -> None:
    """The :data:`FAIL_ONCE_ENV` hook (a no-op unless the variable names this step)."""
    for entry in filter(None, os.environ.get(FAIL_ONCE_ENV, "").split(",")):
        name, _, marker = entry.partition(":")
        if name != step or not marker:
            continue
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        raise RuntimeError(f"injected failure in the {step} step ({FAIL_ONCE_ENV}={marker})")


class _ProcessPart(beam.DoFn):  # type: ignore[misc]
    """One part through the local engine's ``process_part``, in a scratch folder."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.opts = job.o

    def setup(self) -> None:
        self.finder = _Finder()

    def teardown(self) -> None:
        pool = getattr(self.job, "_pool", None)
        if pool is not None:
            pool.shutdown()
            self.job._pool = None

    def process(self, element: tuple[int, list[Ref]]) -> Iterator[Outcome]:
        p, refs = element
        job = self.job
        # Thumbnails only where one can be among the first --contact-sheet inputs.
        job.o = dataclasses.replace(
            self.opts, sheet=max(0, self.opts.sheet - p * self.opts.part_size)
        )
        job.sheet = []
        with tempfile.TemporaryDirectory(prefix="boneage-beam-") as scratch:
            job.work = Path(scratch)
            rows = job.process_part(p, [self.finder.item(r) for r in refs], {})
            records = list(native.read_records(sorted(str(f) for f in job.work.glob("*.tfrecord"))))
            claimed = self.claimed_rows(p, refs, Path(scratch) / "claimed")
        ok = [i for i, row in enumerate(rows) if row["status"] == "ok"]
        if len(ok) != len(records):
            raise RuntimeError(f"part {p}: {len(ok)} ok rows but {len(records)} records")
        record_of = dict(zip(ok, records, strict=True))
        thumb_of = dict(zip(ok, job.sheet, strict=False))
        for i, (ref, row) in enumerate(zip(refs, rows, strict=True)):
            yield Outcome(
                ref.ordinal, p, ref, row, claimed.get(i), record_of.get(i), thumb_of.get(i)
            )
            if i == 0:
                _fail_once("process")  # mid-bundle: after some output

    def claimed_rows(self, p: int, refs: list[Ref], work: Path) -> dict[int, dict[str, Any]]:
        """For the items with a copy in an earlier part: the rows the local engine gives them
        when that copy took the id. Asked of ``process_part`` itself, with the id marked as
        taken, so the rules stay the local engine's; such items are screened, never read."""
        later = [i for i, r in enumerate(refs) if r.later]
        if not later or self.opts.keep_copies:  # with --keep-copies no copy is a duplicate
            return {}
        work.mkdir()
        self.job.work = work
        items = [
            Item(refs[i].source, refs[i].case_id, refs[i].is_image, _never_read, refs[i].skip)
            for i in later
        ]
        rows = self.job.process_part(p, items, {refs[i].case_id: _CLAIMED for i in later})
        taken = f"duplicate id (first: {_CLAIMED})"
        return {i: row for i, row in zip(later, rows, strict=True) if row["reason"] == taken}


def _settle(element: tuple[str, Iterable[Outcome]]) -> Iterator[Outcome]:
    """The copies of one id across parts, as the local engine ends with them: the first copy
    (in input order) that became a record keeps the id; a copy in a later part that reached
    the duplicate check becomes a "duplicate id" row without a record. Copies in that same
    part were already settled by ``process_part``."""
    outs = sorted(element[1], key=lambda o: o.ordinal)
    claim = next((o for o in outs if o.row["status"] == "ok"), None)
    for o in outs:
        if claim is not None and o.part > claim.part and o.claimed_row is not None:
            row = dict(o.claimed_row)
            row["reason"] = row["reason"].replace(_CLAIMED, claim.row["source"])
            o = dataclasses.replace(o, row=row, record=None, thumb=None)
        yield o


def _shard_key(
    o: Outcome, counts: dict[str, int], job: Job
) -> tuple[tuple[str, int, int], tuple[int, bytes]]:
    """(split, shards in the split, the record's shard), the shard by the writer's own hash."""
    split = o.row["split"]
    n = job.num_shards(counts[split])
    assert o.record is not None
    return (split, n, native.shard_index(o.ref.case_id, n)), (o.ordinal, o.record)


class _WriteShard(beam.DoFn):  # type: ignore[misc]
    """Writes one whole shard, records in input order, with a writer that owns only it."""

    def __init__(self, out: str, compression: str | None) -> None:
        self.out = out
        self.compression = _gzip(compression)

    def process(
        self, element: tuple[tuple[str, int, int], Iterable[tuple[int, bytes]]]
    ) -> Iterator[dict[str, Any]]:
        (split, n, index), recs = element
        ordered = sorted(recs, key=lambda r: r[0])
        # The context manager aborts (temporaries removed, nothing published) on an error.
        with native.ShardWriter(self.out, split, n, self.compression, shards=[index]) as writer:
            for k, (_, rec) in enumerate(ordered):
                rewrite(writer, native.decode_example(rec))
                if k == len(ordered) // 2:
                    _fail_once("write")  # mid-shard: some records already written
        summary = writer.summary
        assert summary is not None
        yield dict(summary)


def _save(_: Any, rows: list[Any], shards: list[Any], path: str) -> None:
    """The pipeline's last step: rows and shard summaries for the driver, atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump({"rows": rows, "shards": shards}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


# -- the pipeline ------------------------------------------------------------------------------


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the command line's leftovers. With no runner chosen: the
    DirectRunner with one worker process per core. Unknown options are an error, not
    silently dropped (Beam's own parser would only log them)."""
    args = list(beam_args)
    names = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    for name in _NEEDS_VALUE:
        if name in args:
            raise ValueError(f"write Beam options as {name}=VALUE (one word)")
    if "--runner" not in names and "--direct_running_mode" not in names:
        args.append("--direct_running_mode=multi_processing")
    if "--runner" not in names and "--direct_num_workers" not in names:
        args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    if "--default_sdk_harness_log_level" not in names:
        args.append("--default_sdk_harness_log_level=ERROR")
    options = PipelineOptions(args)
    known = set(options.get_all_options(retain_unknown_options=False))
    unknown = sorted(n for n in names if n[2:] not in known)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}: neither boneage.preprocess's nor Beam's"
        )
    return options


def build(pipeline: beam.Pipeline, job: Job, parts: list[tuple[int, list[Ref]]]) -> None:
    """The job's transforms (see the module docstring), ending in ``OUT/.work/RESULT``."""
    outs = (
        pipeline
        | "Parts" >> beam.Create(parts, reshuffle=False)
        | "Spread" >> beam.Reshuffle()
        | "Process" >> beam.ParDo(_ProcessPart(job))
    )
    # Beam annotates Partition's fn as WithTypeHints; it documents and wraps a plain callable.
    alone, spread = outs | "ByCopies" >> beam.Partition(lambda o, _: int(o.ref.spread), 2)  # type: ignore[arg-type]
    settled = (
        spread
        | "ById" >> beam.Map(lambda o: (o.ref.case_id, o))
        | "Copies" >> beam.GroupByKey()
        | "Settle" >> beam.FlatMap(_settle)
    )
    final = (alone, settled) | "All" >> beam.Flatten()
    records = final | "Records" >> beam.Filter(lambda o: o.record is not None)
    counts = (
        records
        | "Splits" >> beam.Map(lambda o: o.row["split"])
        | "PerSplit" >> beam.combiners.Count.PerElement()
    )
    shards = (
        records
        | "ToShard" >> beam.Map(_shard_key, counts=AsDict(counts), job=job)
        | "Shards" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(_WriteShard(str(job.out), job.o.compression))
    )
    rows = final | "Rows" >> beam.Map(lambda o: (o.ordinal, o.row, o.thumb))
    result = str(job.work / RESULT)
    save = beam.Map(_save, rows=AsList(rows), shards=AsList(shards), path=result)
    _ = pipeline | "Once" >> beam.Create([None]) | "Save" >> save


def _split_summaries(
    job: Job, counts: Counter[str], written: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per split, the summary a local ``ShardWriter.close()`` returns, from the shards the
    workers wrote plus the empty ones (every shard is published, as the local engine does)."""
    by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in written:
        by_split[s["split"]].append(s)
    out: dict[str, Any] = {}
    for split, n_records in sorted(counts.items()):
        n = job.num_shards(n_records)
        parts = by_split.get(split, [])
        have = {e["index"] for s in parts for e in s["shards"]}
        missing = [i for i in range(n) if i not in have]
        if missing:
            empty = native.ShardWriter(
                str(job.out), split, n, _gzip(job.o.compression), shards=missing
            )
            parts.append(dict(empty.close()))
        entries = sorted((e for s in parts for e in s["shards"]), key=lambda e: e["index"])
        out[split] = {
            **{k: v for k, v in parts[0].items() if k not in ("shards", "records", "bytes")},
            "records": sum(e["records"] for e in entries),
            "bytes": sum(e["bytes"] for e in entries),
            "shards": entries,
        }
    return out


def _remove_temporaries(out: Path) -> None:
    """Hidden shard temporaries a killed writer left (a finished writer leaves none)."""
    for path in out.glob(".*-of-*.tfrecord*.tmp-*"):
        path.unlink(missing_ok=True)


def run(opts: Options, beam_args: Sequence[str] = ()) -> Summary:
    """Runs the bulk job on Beam; returns the summary the local engine would (see module)."""
    start = time.perf_counter()
    if opts.resume:
        raise ValueError(
            "--resume is for the local engines: a Beam runner retries failed work itself; "
            "rerun without --resume"
        )
    options = pipeline_options(beam_args)
    check_inputs(list(opts.inputs))
    job = Job(dataclasses.replace(opts, engine="native", progress=False))
    job.workers = opts.workers or 1  # MediaPipe processes per Beam worker, not per core
    job.out.mkdir(parents=True, exist_ok=True)
    if job.work.exists():
        shutil.rmtree(job.work)
    job.work.mkdir()
    parts = list_parts(opts.inputs, opts.part_size)
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, job, parts)
    with (job.work / RESULT).open("rb") as f:
        result = pickle.load(f)
    listed = sorted(result["rows"], key=lambda r: r[0])
    rows: list[dict[str, Any]] = [row for _, row, _ in listed]
    rows += job.rows_without_image({r["id"] for r in rows if r["id"]})
    counts = Counter(r["split"] for r in rows if r["status"] == "ok")
    summary = Summary()
    summary.shards = _split_summaries(job, counts, result["shards"])
    job.sheet = [t for _, row, t in listed if t is not None and row["status"] == "ok"]
    job.sheet = job.sheet[: opts.sheet]
    job.publish(summary, rows, counts)
    _remove_temporaries(job.out)
    summary.seconds = time.perf_counter() - start
    summary.images_per_s = summary.ok / summary.seconds if summary.seconds else 0.0
    (job.out / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2))
    return summary
