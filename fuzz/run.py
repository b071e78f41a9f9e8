"""A bounded-time mutation fuzzer for the native core and the readers that take outside files.

Seeds (fuzz/seeds/, made by fuzz/make_seeds.py from real RSNA radiographs) are mutated (bit
flips, interesting integers, cuts, deleted / repeated / spliced spans, CRCs fixed afterwards so
mutations reach past the checksums) and fed to:

- ``decode``: ``_native.decode_gray`` (PNG and JPEG seeds), strict and ``allow_truncated``;
- ``records``: ``_native.read_examples`` and ``count_records`` on a TFRecord file;
- ``example``: ``_native.decode_example`` on a record's payload;
- ``labels``: ``boneage.ingest.labels.read_labels`` on a CSV file;
- ``archive``: ``boneage.ingest.sources.iter_items`` on a zip / tar.gz, reading every member.

A worker process runs the targets in a loop; the parent watches it. A **crash** is the worker
dying (abort, segfault, any signal), a **hang** is no progress for ``--hang-seconds``, and an
**unexpected exception** is any exception type outside a target's contract (``OSError`` and
``ValueError`` for the native calls and the label reader; none for archive iteration, where
damage becomes a skipped item, and ``OSError`` when such an item is read). Every finding is
written to ``--out`` with the input that caused it; the exit status is 1 when there are any.

    python fuzz/run.py --seconds 60            # what CI runs
    python fuzz/run.py --seconds 600 --seed 7  # a longer soak
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"

TARGET_SEEDS: dict[str, tuple[str, ...]] = {
    "decode": (
        "film.png",
        "film.jpg",
        "film-progressive.jpg",
        "film-rgb16.png",
        "film-palette.png",
        "film-cmyk.jpg",
    ),
    "records": ("shard.tfrecord", "shard.tfrecord.gz"),
    "example": ("shard.tfrecord",),
    "labels": ("labels.csv",),
    "archive": ("films.zip", "films.tar.gz"),
}
# Pixel ceiling for the decoder under fuzzing: a mutated header may claim up to this much,
# which keeps one execution in milliseconds (the limit logic itself is what is exercised).
FUZZ_MAX_PIXELS = 1 << 22
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


# -- mutation -------------------------------------------------------------------------------


def _fix_png_crcs(data: bytearray) -> None:
    """Recomputes every chunk CRC, so a mutated chunk is parsed rather than refused."""
    at = 8
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        end = at + 8 + length
        if end + 4 > len(data):
            return
        struct.pack_into(">I", data, end, zlib.crc32(bytes(data[at + 4 : end])))
        at = end + 4


def _fix_record_crcs(data: bytearray, crc32c: Callable[[bytes], int]) -> None:
    """Recomputes both masked CRC32Cs of every record of a plain TFRecord file."""
    at = 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        struct.pack_into("<I", data, at + 8, crc32c(bytes(data[at : at + 8])))
        end = at + 12 + length
        if end + 4 > len(data):
            return
        struct.pack_into("<I", data, end, crc32c(bytes(data[at + 12 : end])))
        at = end + 4


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def mutate(rng: random.Random, data: bytes, corpus: list[bytes], fix_records: bool) -> bytes:
    """One to eight stacked mutations of `data`, then (usually) checksums made valid again."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        n = len(buf)
        op = rng.randrange(9)
        if op == 0 and n:  # flip bits
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            buf[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif op == 2 and n >= 4:  # an interesting 16/32-bit integer, either byte order
            size = rng.choice((2, 4))
            at = rng.randrange(n - size + 1)
            value = rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)
            buf[at : at + size] = value.to_bytes(size, rng.choice(("big", "little")))
        elif op == 3 and n:  # cut
            del buf[rng.randrange(n) :]
        elif op == 4 and n:  # delete a span
            at = rng.randrange(n)
            del buf[at : at + rng.randint(1, 64)]
        elif op == 5 and n:  # repeat a span
            at = rng.randrange(n)
            span = buf[at : at + rng.randint(1, 256)]
            buf[at:at] = span * rng.randint(1, 4)
        elif op == 6 and n:  # random bytes
            at = rng.randrange(n)
            buf[at : at + 8] = rng.randbytes(rng.randint(1, 8))
        elif op == 7:  # splice another seed in
            other = rng.choice(corpus)
            if other:
                at, src = rng.randrange(n + 1), rng.randrange(len(other))
                buf[at:] = other[src : src + rng.randint(1, 512)] + buf[at:]
        elif op == 8 and n:  # an arithmetic nudge
            at = rng.randrange(n)
            buf[at] = (buf[at] + rng.choice((-2, -1, 1, 2))) & 0xFF
    if rng.random() < 0.7:
        if buf.startswith(b"\x89PNG\r\n\x1a\n"):
            _fix_png_crcs(buf)
        elif fix_records and data[:2] != b"\x1f\x8b":
            _fix_record_crcs(buf, _masked_crc32c)
    return bytes(buf)


def make_input(run_seed: int, index: int, corpus: dict[str, list[bytes]]) -> tuple[str, bytes]:
    """The target and input of execution `index`: deterministic, so the parent can rebuild
    the input of an execution that killed the worker."""
    rng = random.Random(run_seed * 1_000_003 + index)
    target = rng.choice(sorted(TARGET_SEEDS))
    seeds = corpus[target]
    everything = [s for v in corpus.values() for s in v]
    data = mutate(rng, rng.choice(seeds), everything, target in ("records", "example"))
    if target == "example":  # the payload of the (possibly mutated) first record
        data = data[12:-4] if len(data) > 16 else data
    return target, data


def load_corpus() -> dict[str, list[bytes]]:
    return {t: [(SEEDS / n).read_bytes() for n in names] for t, names in TARGET_SEEDS.items()}


# -- targets --------------------------------------------------------------------------------


class Targets:
    """Runs one input against one target; raises only what is outside the target's contract."""

    def __init__(self, workdir: Path) -> None:
        from boneage import _native
        from boneage.ingest import labels, sources

        self.native, self.labels, self.sources = _native, labels, sources
        self.dir = workdir

    def _file(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def run(self, target: str, data: bytes) -> None:
        n = self.native
        if target == "decode":
            for allow in (False, True):
                try:
                    img = n.decode_gray(data, FUZZ_MAX_PIXELS, allow_truncated=allow)
                except (OSError, ValueError):
                    continue
                assert img.ndim == 2 and img.size > 0
        elif target == "records":
            path = self._file("f.tfrecord", data)
            for skip in (False, True):
                try:
                    for ex in n.read_examples([path], skip_corrupt=skip):
                        assert isinstance(ex, dict)
                except (OSError, ValueError):
                    pass
            try:
                n.count_records([path])
            except (OSError, ValueError):
                pass
        elif target == "example":
            try:
                n.decode_example(data)
            except ValueError:
                pass
        elif target == "labels":
            path = self._file("labels.csv", data)
            try:
                self.labels.read_labels([path])
            except (OSError, ValueError):
                pass
        elif target == "archive":
            name = "films.zip" if data[:2] == b"PK" or data[:1] == b"\0" else "films.tar.gz"
            path = self._file(name, data)
            for item in self.sources.iter_items([path]):
                if item.skip:
                    continue
                try:
                    item.read()
                except OSError:
                    pass
        else:
            raise KeyError(target)


# -- worker ---------------------------------------------------------------------------------


def worker(run_seed: int, start: int, seconds: float, status: Path) -> None:
    """Executes inputs start, start+1, ... until the deadline; publishes progress in `status`
    (u64 index of the input in hand, u64 executions done, u64 1 once started) and findings as
    JSON lines."""
    corpus = load_corpus()
    with open(status, "r+b") as f, tempfile.TemporaryDirectory() as tmp:
        mem = mmap.mmap(f.fileno(), 24)
        targets = Targets(Path(tmp))
        index, done = start, 0
        per_target = dict.fromkeys(TARGET_SEEDS, 0)
        deadline = time.monotonic() + seconds
        # The harness's own test makes the 4th input of a run abort / raise / hang.
        selftest = os.environ.get("BONEAGE_FUZZ_SELFTEST", "")
        while time.monotonic() < deadline:
            struct.pack_into("<QQQ", mem, 0, index, done, 1)
            target, data = make_input(run_seed, index, corpus)
            try:
                if index == 3 and selftest == "abort":
                    os.abort()
                if index == 3 and selftest == "hang":
                    time.sleep(3600)
                if index == 3 and selftest == "raise":
                    raise RuntimeError("self-test")
                per_target[target] += 1
                targets.run(target, data)
            except BaseException as e:  # anything here is a finding
                if isinstance(e, KeyboardInterrupt):
                    raise
                finding = {
                    "kind": "unexpected exception",
                    "target": target,
                    "index": index,
                    "error": f"{type(e).__name__}: {e}"[:500],
                    "traceback": traceback.format_exc()[-2000:],
                }
                print(json.dumps(finding), flush=True)
            index += 1
            done += 1
        struct.pack_into("<QQQ", mem, 0, index, done, 1)
        done_msg = {"kind": "done", "index": index, "done": done, "per_target": per_target}
        print(json.dumps(done_msg), flush=True)


# -- parent ---------------------------------------------------------------------------------


def _save(out: Path, finding: dict[str, object], data: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{finding['kind'].__str__().replace(' ', '-')}-{finding['target']}-{finding['index']}"
    (out / f"{stem}.bin").write_bytes(data)
    (out / f"{stem}.json").write_text(json.dumps(finding, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="total fuzzing time")
    ap.add_argument("--seed", type=int, default=None, help="run seed (default: from the clock)")
    ap.add_argument("--hang-seconds", type=float, default=10.0)
    ap.add_argument(
        "--out", type=Path, default=None, help="where findings go (default: a temp dir)"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--seconds-left", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--status", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.seed, args.start, args.seconds_left, args.status)
        return 0

    run_seed = args.seed if args.seed is not None else int(time.time())
    out = args.out or Path(tempfile.mkdtemp(prefix="boneage-fuzz-"))
    corpus = load_corpus()
    findings: list[dict[str, object]] = []
    per_target: dict[str, int] = {}
    executions = 0
    start_index = 0
    t0 = time.monotonic()
    deadline_wall = time.time() + args.seconds
    with tempfile.NamedTemporaryFile(prefix="fuzz-status-") as status_file:
        status = Path(status_file.name)
        while time.time() < deadline_wall:
            status.write_bytes(struct.pack("<QQQ", start_index, 0, 0))
            left = deadline_wall - time.time()
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--seed",
                str(run_seed),
                "--start",
                str(start_index),
                "--status",
                str(status),
                "--seconds-left",
                str(left),
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            last, last_change = (start_index, 0, 0), time.monotonic()
            hung = False
            while proc.poll() is None:
                time.sleep(0.2)
                now = struct.unpack("<QQQ", status.read_bytes()[:24])
                # Start-up (imports) gets a minute; then each input gets hang_seconds.
                allowed = args.hang_seconds if now[2] else 60.0
                if now != last:
                    last, last_change = now, time.monotonic()
                elif time.monotonic() - last_change > allowed:
                    proc.kill()
                    hung = True
                    break
            stdout, _ = proc.communicate()
            index, done, _ = struct.unpack("<QQQ", status.read_bytes()[:24])
            executions += done
            finished = False
            for line in stdout.splitlines():
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("kind") == "done":
                    finished = True
                    for t, k in msg.get("per_target", {}).items():
                        per_target[t] = per_target.get(t, 0) + k
                elif msg.get("kind") == "unexpected exception":
                    findings.append(msg)
                    _save(out, msg, make_input(run_seed, int(msg["index"]), corpus)[1])
            if finished:
                break
            target, data = make_input(run_seed, index, corpus)
            finding: dict[str, object] = {
                "kind": "hang" if hung else "crash",
                "target": target,
                "index": index,
                "error": "no progress" if hung else f"worker exit status {proc.returncode}",
            }
            findings.append(finding)
            _save(out, finding, data)
            start_index = index + 1  # restart after the input that killed the worker
    elapsed = time.monotonic() - t0
    kinds = {k: sum(1 for f in findings if f["kind"] == k) for k in ("crash", "hang")}
    unexpected = sum(1 for f in findings if f["kind"] == "unexpected exception")
    print(
        f"fuzz: seed {run_seed}: {executions} executions in {elapsed:.1f} s "
        f"({executions / max(elapsed, 1e-9):.0f}/s); crashes {kinds['crash']}, hangs "
        f"{kinds['hang']}, unexpected exceptions {unexpected}"
        + (f"; findings in {out}" if findings else "")
    )
    if per_target:
        print("  per target: " + ", ".join(f"{t} {k}" for t, k in sorted(per_target.items())))
    for f in findings[:10]:
        print(f"  {f['kind']} in {f['target']} (input {f['index']}): {f['error']}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
