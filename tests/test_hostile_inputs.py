"""`python -m boneage.preprocess` under hostile input: nothing lost, nothing crashes.

Every input gets exactly one manifest row with its status and reason; damaged archives keep
what comes before the damage; links, FIFOs, devices and hidden files are skipped by type
without being opened; reads are bounded; bad label files and mismatched resumes end with exit
status 2 and one line. Images are tiny and the localiser is off, so each run takes a moment.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from boneage import predict
from boneage.ingest import sources
from boneage.ingest.labels import read_labels
from boneage.preprocess import main

FAST = ["--localiser", "none", "--size", "32", "--contact-sheet", "0", "--quiet"]


def png(seed: int, h: int = 48, w: int = 40) -> bytes:
    """A small noisy 'film' PNG (each seed a different file)."""
    img = np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A test that would block (a FIFO opened for reading) fails after 60 s instead."""

    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def boom(signum: int, frame: object) -> None:
        raise TimeoutError("the run hung")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[dict], str]:
    """Runs the CLI; returns the exit status, the manifest rows (in order) and stderr."""
    argv = [str(a) for a in args]
    code = main([*argv, *FAST])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    out = Path(argv[argv.index("--out") + 1])
    rows = []
    if (out / "manifest.csv").exists():
        with (out / "manifest.csv").open() as f:
            rows = list(csv.DictReader(f))
    return code, rows, err


def table(rows: list[dict]) -> list[tuple[str, str]]:
    """(id, status) per row, in manifest order."""
    return [(r["id"], r["status"]) for r in rows]


def reason(rows: list[dict], source_end: str) -> str:
    (row,) = [r for r in rows if r["source"].endswith(source_end)]
    return row["reason"]


def make_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def add_tar(tf: tarfile.TarFile, name: str, data: bytes | None = None, **kw: object) -> None:
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    if data is not None:
        info.size = len(data)
    tf.addfile(info, None if data is None else io.BytesIO(data))


FIVE = {f"d/{i}.png": png(i) for i in range(1, 6)}


# -- damaged archives ----------------------------------------------------------------------


def test_zip_cut_inside_a_member_keeps_the_members_before_it(tmp_path, capsys):
    whole = make_zip(tmp_path / "whole.zip", FIVE)
    info = zipfile.ZipFile(whole).getinfo("d/4.png")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: info.header_offset + 60])  # inside 4's data
    code, rows, _ = run(capsys, cut, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [("1", "ok"), ("2", "ok"), ("3", "ok"), ("4", "skipped")]
    assert reason(rows, "!d/4.png") == "archive cut off inside this member"


def test_zip_cut_between_members_says_the_rest_is_unreadable(tmp_path, capsys):
    whole = make_zip(tmp_path / "whole.zip", FIVE)
    info = zipfile.ZipFile(whole).getinfo("d/4.png")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: info.header_offset + 10])  # inside 4's header
    code, rows, _ = run(capsys, cut, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [("1", "ok"), ("2", "ok"), ("3", "ok"), ("", "skipped")]
    assert rows[3]["source"] == str(cut)
    assert "nothing readable after d/3.png" in rows[3]["reason"]


def test_streamed_zip_cut_is_recovered_through_its_data_descriptors(tmp_path, capsys):
    """A zip written to a pipe has no sizes in its local headers (data descriptors follow
    the data): the deflate streams themselves say where each member ends."""

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in FIVE.items():
            zf.writestr(name, data)
    assert zipfile.ZipFile(io.BytesIO(bytes(pipe.data))).getinfo("d/1.png").flag_bits & 0x08
    cut = tmp_path / "streamed.zip"
    cut.write_bytes(bytes(pipe.data[: len(pipe.data) * 7 // 10]))
    code, rows, _ = run(capsys, cut, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [("1", "ok"), ("2", "ok"), ("3", "ok"), ("4", "skipped")]
    assert rows[-1]["reason"] == "archive cut off inside this member"


def test_zip_member_with_bad_crc_or_bad_deflate_data_is_one_skipped_row(tmp_path, capsys):
    stored = make_zip(tmp_path / "stored.zip", FIVE, zipfile.ZIP_STORED)
    raw = bytearray(stored.read_bytes())
    info = zipfile.ZipFile(stored).getinfo("d/2.png")
    raw[info.header_offset + 30 + len("d/2.png") + 100] ^= 0xFF  # in 2's pixels
    stored.write_bytes(bytes(raw))
    deflated = make_zip(tmp_path / "deflated.zip", {f"e/{i}.png": png(i) for i in (6, 7)})
    raw = bytearray(deflated.read_bytes())
    info = zipfile.ZipFile(deflated).getinfo("e/7.png")
    start = info.header_offset + 30 + len("e/7.png")
    raw[start : start + 40] = b"\xff" * 40  # not deflate data at all
    deflated.write_bytes(bytes(raw))

    code, rows, _ = run(capsys, stored, deflated, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [
        ("1", "ok"), ("2", "skipped"), ("3", "ok"), ("4", "ok"), ("5", "ok"),
        ("6", "ok"), ("7", "skipped"),
    ]  # fmt: skip
    assert "Bad CRC-32" in reason(rows, "stored.zip!d/2.png")
    assert "damaged archive member" in reason(rows, "deflated.zip!e/7.png")


def test_encrypted_and_unsupported_members_are_skipped_rows(tmp_path, capsys):
    path = make_zip(tmp_path / "odd.zip", {"1.png": png(1), "2.png": png(2), "3.png": png(3)})
    raw = bytearray(path.read_bytes())
    zf = zipfile.ZipFile(path)
    for name, field, value in (("1.png", 6, 0x01), ("3.png", 8, 99)):
        # Set the flag (encrypted) or the method (99) in both the local and central headers
        # (the central directory has one more field before them).
        local = zf.getinfo(name).header_offset
        central = raw.index(b"PK\x01\x02")
        while raw[central + 46 : central + 46 + len(name)] != name.encode():
            central = raw.index(b"PK\x01\x02", central + 4)
        raw[local + field : local + field + 2] = value.to_bytes(2, "little")
        raw[central + field + 2 : central + field + 4] = value.to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    code, rows, _ = run(capsys, path, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [("1", "skipped"), ("2", "ok"), ("3", "skipped")]
    assert "encrypted" in reason(rows, "!1.png")
    assert "compression" in reason(rows, "!3.png").lower()


def test_not_an_archive_at_all_is_one_row(tmp_path, capsys):
    (tmp_path / "junk.zip").write_bytes(b"this is not a zip file")
    (tmp_path / "junk.tar.gz").write_bytes(b"nor a tarball")
    code, rows, _ = run(
        capsys, tmp_path / "junk.zip", tmp_path / "junk.tar.gz", "--out", tmp_path / "out"
    )
    assert code == 1
    assert table(rows) == [("", "skipped"), ("", "skipped")]
    assert rows[0]["reason"].startswith("not a readable zip archive")
    assert rows[1]["reason"].startswith("not a readable tar archive")


def test_tar_gz_cut_inside_a_member_keeps_the_members_before_it(tmp_path, capsys):
    whole = tmp_path / "whole.tar.gz"
    with tarfile.open(whole, "w:gz") as tf:
        for name, data in FIVE.items():
            add_tar(tf, name, data)
    raw = whole.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    code, rows, _ = run(capsys, cut, "--out", tmp_path / "out")
    assert code == 1
    *good, last = table(rows)
    assert good and all(s == "ok" for _, s in good)
    assert last == (str(len(good) + 1), "skipped")  # the member the cut falls in
    assert rows[-1]["reason"].startswith("damaged archive member (")
    assert "Compressed file ended before the end-of-stream marker" in rows[-1]["reason"]


def test_tar_gz_failing_its_crc_is_reported(tmp_path, capsys):
    """tarfile never checks a gzip stream's CRC; damage that reads as the end marker would
    drop the rest silently, so the stream is read to its check after the last member."""
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in FIVE.items():
            add_tar(tf, name, data)
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    path.write_bytes(bytes(raw))
    code, rows, _ = run(capsys, path, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [(str(i), "ok") for i in range(1, 6)] + [("", "skipped")]
    assert rows[-1]["reason"].startswith("compressed data damaged or cut off after d/5.png")
    assert "CRC check failed" in rows[-1]["reason"]


def test_tar_cut_between_members_or_with_a_damaged_header_says_so(tmp_path, capsys):
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in FIVE.items():
            add_tar(tf, name, data)
    members = tarfile.open(whole).getmembers()
    raw = whole.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: members[2].offset])  # ends right after member 2
    garbled = tmp_path / "garbled.tar"
    bad = bytearray(raw)
    bad[members[3].offset : members[3].offset + 512] = b"garbage!" * 64
    garbled.write_bytes(bytes(bad))
    code, rows, _ = run(capsys, cut, garbled, "--out", tmp_path / "out")
    assert code == 1
    # The garbled copy's 1 and 2 are duplicates of the cut one's.
    assert table(rows) == [
        ("1", "ok"), ("2", "ok"), ("", "skipped"),
        ("1", "skipped"), ("2", "skipped"), ("3", "ok"), ("", "skipped"),
    ]  # fmt: skip
    ends = "archive ends without its end marker (cut off?) after d/2.png"
    assert rows[2]["reason"].startswith(ends)
    assert "damaged header after d/3.png" in rows[6]["reason"]
    assert rows[3]["reason"].startswith("duplicate id")


# -- members and files that are not regular files --------------------------------------------


def test_tar_links_fifos_devices_and_hidden_members_get_rows_and_are_never_followed(
    tmp_path, capsys
):
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w") as tf:
        add_tar(tf, "odd", type=tarfile.DIRTYPE)  # a folder: no row
        add_tar(tf, "odd/1.png", png(1))
        add_tar(tf, "odd/2.png", type=tarfile.SYMTYPE, linkname="/dev/zero")
        add_tar(tf, "odd/3.png", type=tarfile.LNKTYPE, linkname="odd/1.png")
        add_tar(tf, "odd/4.png", type=tarfile.FIFOTYPE)
        add_tar(tf, "odd/5.png", type=tarfile.CHRTYPE, devmajor=1, devminor=5)
        add_tar(tf, "odd/._6.png", png(6))
        add_tar(tf, "odd\\7.png", png(7))  # made on Windows
    code, rows, _ = run(capsys, path, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [
        ("1", "ok"), ("2", "skipped"), ("3", "skipped"), ("4", "skipped"),
        ("5", "skipped"), ("._6", "skipped"), ("7", "ok"),
    ]  # fmt: skip
    assert reason(rows, "2.png") == "not a regular file (symbolic link; not followed)"
    assert reason(rows, "3.png") == "not a regular file (hard link; not followed)"
    assert reason(rows, "4.png") == "not a regular file (FIFO; not followed)"
    assert reason(rows, "5.png") == "not a regular file (character device; not followed)"
    assert reason(rows, "._6.png") == "hidden file (name starts with a dot)"


def test_zip_links_hidden_members_and_windows_names(tmp_path, capsys):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("scans/", b"")  # a folder: no row
        zf.writestr("scans\\1234.png", png(1))  # made on Windows
        link = zipfile.ZipInfo("scans/55.png")
        link.create_system = 3
        link.external_attr = 0o120777 << 16  # a symlink, as Info-ZIP stores one
        zf.writestr(link, "/dev/zero")
        zf.writestr("__MACOSX/scans/._1234.png", b"\x00\x05\x16\x07")
        zf.writestr(".DS_Store", b"junk")
    code, rows, _ = run(capsys, path, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [
        ("1234", "ok"), ("55", "skipped"), ("._1234", "skipped"), (".DS_Store", "skipped")
    ]  # fmt: skip
    assert reason(rows, "55.png") == "not a regular file (symbolic link; not followed)"
    assert reason(rows, "._1234.png") == "hidden file (name starts with a dot)"
    assert sources.count_items([path]) == 4


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_folder_fifo_device_links_and_hidden_files_are_skipped_by_type(tmp_path, capsys):
    src = tmp_path / "films"
    (src / "sub").mkdir(parents=True)
    (src / ".cache").mkdir()
    (src / "1.png").write_bytes(png(1))
    os.mkfifo(src / "2.png")  # opening it for reading would block forever
    (src / "3.png").symlink_to("/dev/zero")  # reading it would never end
    (src / "4.png").symlink_to(src / "nowhere.png")
    (src / "5.png").symlink_to(src / "1.png")  # a link to a regular file: followed
    (src / "loop").symlink_to(src)
    (src / ".DS_Store").write_bytes(b"junk")
    (src / ".cache" / "9.png").write_bytes(png(9))
    (src / "sub" / "6.png").write_bytes(png(6))
    code, rows, _ = run(capsys, src, "--out", tmp_path / "out")
    assert code == 1
    assert table(rows) == [
        (".DS_Store", "skipped"), ("", "skipped"), ("1", "ok"), ("2", "skipped"),
        ("3", "skipped"), ("4", "skipped"), ("5", "ok"), ("loop", "skipped"), ("6", "ok"),
    ]  # fmt: skip
    assert reason(rows, "2.png") == "not a regular file (FIFO)"
    assert reason(rows, "3.png") == "not a regular file (symbolic link to a character device)"
    assert reason(rows, "4.png").startswith("broken symbolic link")
    assert reason(rows, "loop") == "symbolic link to a folder (not followed)"
    assert reason(rows, ".cache").startswith("hidden folder")
    assert sources.count_items([src]) == len(rows)


def test_every_read_is_bounded(tmp_path, capsys, monkeypatch):
    """Sizes are checked before reading (folders, zip and tar headers), and reads stop at
    limit + 1 bytes even where the size lies (or there is none)."""
    big, small = png(1, 96, 80), png(2)
    monkeypatch.setattr(sources, "MAX_MEMBER_BYTES", (len(big) + len(small)) // 2)
    assert len(big) > sources.MAX_MEMBER_BYTES >= len(small)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "1.png").write_bytes(big)
    (tmp_path / "f" / "2.png").write_bytes(small)
    make_zip(tmp_path / "a.zip", {"3.png": big, "4.png": small})
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        add_tar(tf, "5.png", big)
        add_tar(tf, "6.png", small)
    code, rows, _ = run(
        capsys, tmp_path / "f", tmp_path / "a.zip", tmp_path / "a.tar", "--out", tmp_path / "o"
    )
    assert code == 1
    assert table(rows) == [
        ("1", "skipped"), ("2", "ok"), ("3", "skipped"), ("4", "ok"), ("5", "skipped"),
        ("6", "ok"),
    ]  # fmt: skip
    for r in rows[::2]:
        assert "byte limit" in r["reason"], r
    # /proc files claim a size of 0 and have more: the read itself stops at limit + 1.
    status = Path("/proc/self/status")
    if status.is_file() and status.stat().st_size == 0:
        with pytest.raises(OSError, match="more than 10 bytes"):
            sources.read_regular(status, limit=10)


def test_a_sparse_file_over_the_real_limit_is_never_read(tmp_path, capsys):
    src = tmp_path / "f"
    src.mkdir()
    with (src / "1.png").open("wb") as f:
        f.truncate(sources.MAX_MEMBER_BYTES + 1)  # sparse: no disk used
    code, rows, _ = run(capsys, src, "--out", tmp_path / "o")
    assert code == 1 and table(rows) == [("1", "skipped")]
    assert "byte limit" in rows[0]["reason"]


# -- duplicate ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("part_size", ["1", "256"])
def test_a_copy_that_fails_to_decode_does_not_claim_its_id(tmp_path, capsys, part_size):
    src = tmp_path / "films"
    for sub in ("a", "b", "c"):
        (src / sub).mkdir(parents=True)
    (src / "a" / "5.png").write_bytes(png(5)[:100])  # cut short: does not decode
    (src / "b" / "5.png").write_bytes(png(5))
    (src / "c" / "5.png").write_bytes(png(55))
    code, rows, _ = run(capsys, src, "--out", tmp_path / "out", "--part-size", part_size)
    assert code == 1
    assert table(rows) == [("5", "skipped"), ("5", "ok"), ("5", "skipped")]
    assert "duplicate" not in rows[0]["reason"] and rows[0]["reason"]
    assert rows[1]["source"].endswith("b/5.png")
    assert rows[2]["reason"] == f"duplicate id (first: {src / 'b' / '5.png'})"


# -- labels and exit status ------------------------------------------------------------------


def write_text(path: Path, text: str, encoding: str, bom: bytes = b"") -> Path:
    path.write_bytes(bom + text.encode(encoding))
    return path


def test_label_headers_and_values_with_spaces_are_read(tmp_path, capsys):
    labels = tmp_path / "test.csv"
    labels.write_text("Case ID, Sex, Ground truth bone age (months)\n 1, M , 77.5\n2,F, 30\n")
    table_ = read_labels([labels])
    assert {k: (v.male, v.age_months) for k, v in table_.labels.items()} == {
        "1": (1, 77.5), "2": (0, 30.0)
    }  # fmt: skip
    src = tmp_path / "f"
    src.mkdir()
    (src / "1.png").write_bytes(png(1))
    code, rows, _ = run(capsys, src, "--labels", labels, "--out", tmp_path / "out")
    assert code == 1  # 2 has a label but no image
    assert [(r["id"], r["status"], r["split"], r["age"]) for r in rows] == [
        ("1", "ok", "test", "77.5"), ("2", "skipped", "test", "30.0")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
)
def test_utf8_and_utf16_label_files_with_a_bom_are_read(tmp_path, encoding, bom):
    text = "id,boneage,male\r\n1,120,True\r\n2,30,False\r\n"
    path = write_text(tmp_path / "l.csv", text, encoding, bom)
    assert sorted(read_labels([path]).labels) == ["1", "2"]


@pytest.mark.parametrize(
    "content",
    [
        "Image ID,male,Bone Age (months),Comment\n1,True,120,Gonçalves\n".encode("latin-1"),
        "id,boneage,male\n1,120,True\n".encode("utf-16-le"),  # UTF-16 without a BOM
    ],
)
def test_other_encodings_are_exit_2_with_one_line_naming_the_file(tmp_path, capsys, content):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(content)
    with pytest.raises(ValueError, match=r"labels\.csv: not UTF-8 text"):
        read_labels([labels])
    src = tmp_path / "f"
    src.mkdir()
    (src / "1.png").write_bytes(png(1))
    code, rows, err = run(capsys, src, "--labels", labels, "--out", tmp_path / "out")
    assert code == 2 and rows == []
    assert err.count("\n") == 1 and err.startswith("error: ") and str(labels) in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_unreadable_label_files_are_exit_2_with_one_line(tmp_path, capsys):
    src = tmp_path / "f"
    src.mkdir()
    (src / "1.png").write_bytes(png(1))
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    for bad, words in (
        (tmp_path / "missing.csv", "No such file"),
        (tmp_path, "not a regular file (folder)"),
        (fifo, "not a regular file (FIFO)"),
    ):
        code, rows, err = run(capsys, src, "--labels", bad, "--out", tmp_path / "out")
        assert code == 2 and rows == [], bad
        assert err.count("\n") == 1 and str(bad) in err and words in err, err


def test_exit_status_zero_when_every_input_is_written(tmp_path, capsys):
    src = tmp_path / "f"
    src.mkdir()
    (src / "1.png").write_bytes(png(1))
    zpath = make_zip(tmp_path / "a.zip", {"2.png": png(2)})
    code, rows, _ = run(capsys, src, zpath, "--out", tmp_path / "out")
    assert code == 0 and table(rows) == [("1", "ok"), ("2", "ok")]


def test_a_missing_input_fails_before_any_work(tmp_path, capsys):
    src = tmp_path / "f"
    src.mkdir()
    (src / "1.png").write_bytes(png(1))
    code, rows, err = run(capsys, src, tmp_path / "nope.zip", "--out", tmp_path / "out")
    assert code == 2 and rows == [] and not (tmp_path / "out" / ".work").exists()
    assert err.count("\n") == 1 and "input not found" in err and "nope.zip" in err


def test_predict_on_a_folder_without_images_is_an_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no films here")
    assert predict.main([str(tmp_path), "--sex", "F"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "no images found in the inputs" in captured.err


# -- --resume --------------------------------------------------------------------------------


def test_resume_with_different_output_options_is_refused(tmp_path, capsys):
    src = tmp_path / "f"
    src.mkdir()
    for i in range(1, 5):
        (src / f"{i}.png").write_bytes(png(i))
    labels = tmp_path / "l.csv"
    labels.write_text("id,boneage,male\n1,120,True\n2,30,False\n3,50,True\n4,70,False\n")
    out = tmp_path / "out"
    base = ["--labels", labels, "--out", out, "--part-size", "2", "--keep-work"]
    base = [src, *base]
    split = ["--split-by", "train=0.5,val=0.5"]
    assert run(capsys, *base, *split)[0] == 0
    assert (out / ".work" / "job.json").is_file()

    cases = [
        ([*split, "--seed", "1"], "seed 0 -> 1"),
        (["--split-by", "train=0.75,val=0.25"], "split_by"),
        ([], "split_by"),
        ([*split, "--shards", "2"], "shards 0 -> 2"),
        ([*split, "--gzip"], "compression None -> 'GZIP'"),
        ([*split, "--part-size", "3"], "part_size 2 -> 3"),
    ]
    for extra, words in cases:
        code, _, err = run(capsys, *base, *extra, "--resume")
        assert code == 2 and err.count("\n") == 1, extra
        assert "--resume with options that differ" in err and words in err, (extra, err)

    other = tmp_path / "g"
    other.mkdir()
    code, _, err = run(capsys, other, *base, *split, "--resume")
    assert code == 2 and "inputs" in err

    labels.write_text("id,boneage,male\n1,121,True\n2,30,False\n3,50,True\n4,70,False\n")
    code, _, err = run(capsys, *base, *split, "--resume")
    assert code == 2 and f"label file content changed ({os.path.realpath(labels)})" in err

    labels.write_text("id,boneage,male\n1,120,True\n2,30,False\n3,50,True\n4,70,False\n")
    code, rows, _ = run(capsys, *base, *split, "--resume")
    assert code == 0 and len(rows) == 4  # the same options resume


# -- worker processes --------------------------------------------------------------------------

POOL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from boneage.ingest import bulk
    def init(parent, portable):
        if portable:
            sys.platform = "elsewhere"  # no prctl: the watcher thread alone must do it
        bulk._die_with_parent(parent, poll_s=0.1)

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=init,
                                   initargs=(os.getpid(), sys.argv[1] == "1"))
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(120)
    """
)


def alive(pid: int) -> bool:
    """Running, not a zombie (a dead orphan may wait a moment to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("portable", [False, True], ids=["pdeathsig", "watcher-thread"])
def test_workers_exit_when_the_bulk_process_is_killed(tmp_path, portable):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), "1" if portable else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        assert alive(worker)
        proc.kill()  # kill -9: the pool gets no chance to stop its workers
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 20
    while alive(worker) and time.time() < deadline:
        time.sleep(0.05)
    gone = not alive(worker)
    if not gone:
        os.kill(worker, signal.SIGKILL)  # leave nothing behind
    assert gone, "the worker outlived its parent"
