"""End-to-end tests of `python -m boneage.preprocess` on archives made here and on real images."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from boneage import _native as native
from boneage.ingest import reference as ref
from boneage.ingest.labels import read_labels
from boneage.ingest.splits import parse_fractions, stratified_split
from boneage.preprocess import main
from shared_data import RSNA


def hand_png(seed: int, h: int = 420, w: int = 330) -> bytes:
    """A bright hand-like blob (palm + fingers) on dark film, with a small letter marker."""
    rng = np.random.default_rng(seed)
    img = rng.integers(10, 40, (h, w), dtype=np.uint8)
    cx = w // 2 + int(rng.integers(-20, 20))
    cv2.ellipse(img, (cx, int(h * 0.65)), (w // 4, h // 5), 0, 0, 360, 190, -1)
    for k in range(5):
        x = cx - w // 5 + k * w // 10
        cv2.line(img, (x, int(h * 0.55)), (x + (k - 2) * 8, int(h * 0.15)), 200, 14)
    cv2.rectangle(img, (8, 8), (30, 40), 230, -1)
    return cv2.imencode(".png", img)[1].tobytes()


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, Path]:
    """A zip and a tar.gz with good images, a corrupt file, a non-image and a duplicate id."""
    zpath = tmp_path / "train.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(1, 7):
            zf.writestr(f"boneage-training-dataset/{i}.png", hand_png(i))
        zf.writestr("boneage-training-dataset/7.png", hand_png(7)[:300])  # truncated
        zf.writestr("boneage-training-dataset/notes.txt", b"not an image")
        zf.writestr("../../escape/8.png", hand_png(8))  # zip-slip name: read, never written
    tpath = tmp_path / "more.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        for name, data in [("more/9.png", hand_png(9)), ("more/3.png", hand_png(33)),
                           ("more/10.png", hand_png(10))]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    labels = write_csv(
        tmp_path / "train.csv",
        ["id", "boneage", "male"],
        [[1, 120, "True"], [2, 30, "False"], [3, 200, "True"], [4, 64, "False"],
         [5, 150, "True"], [6, "nan", "True"], [7, 99, "False"], [8, 12, "X"],
         [9, 180, "False"], [11, 50, "True"]],
    )  # fmt: skip
    test_labels = write_csv(
        tmp_path / "test.csv",
        ["Case ID", "Sex", "Ground truth bone age (months)"],
        [[10, "M", 77.5]],
    )
    return {"zip": zpath, "tar": tpath, "labels": labels, "test_labels": test_labels}


def read_manifest(out: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with (out / "manifest.csv").open() as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["id"], []).append(r)
    return rows


def test_end_to_end_on_small_archives(archives, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([str(archives["zip"]), str(archives["tar"]), "--labels",
                 str(archives["labels"]), str(archives["test_labels"]),
                 "--out", str(out), "--localiser", "native", "--quiet"])  # fmt: skip
    assert code == 1  # finished, but some inputs were skipped
    m = read_manifest(out)
    ok = {cid for cid, rows in m.items() if any(r["status"] == "ok" for r in rows)}
    assert ok == {"1", "2", "3", "4", "5", "9", "10"}
    reason = {cid: [r["reason"] for r in rows if r["status"] != "ok"] for cid, rows in m.items()}
    assert any("invalid bone age" in r for r in reason["6"])
    assert any("PNG" in r or "truncated" in r for r in reason["7"]), reason["7"]
    assert any("unknown sex" in r for r in reason["8"])
    assert any("duplicate id" in r for r in reason["3"])  # more/3.png after the zip's 3.png
    assert any("label without image" in r for r in reason["11"])
    assert any("not an image" in r for r in reason["notes"])
    assert {r["split"] for r in m["10"]} == {"test"}
    assert not (tmp_path / "escape").exists() and not (out.parent / "escape").exists()

    # Shards: one split each; records carry labels, pixels equal the reference pipeline.
    train = sorted(out.glob("train-*-of-*.tfrecord"))
    test = sorted(out.glob("test-*-of-*.tfrecord"))
    assert train and test
    records = {ex["id"]: ex for ex in native.read_examples([str(p) for p in train + test])}
    assert set(records) == ok
    r1 = records["1"]
    assert r1["male"] == 1 and r1["age"] == pytest.approx(120.0)
    assert r1["image"].shape == (256, 256) and r1["image"].dtype == np.uint8
    row = m["1"][0]
    box = tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1"))
    assert row["localiser"] in {"native", "none"}
    src = ref.decode_gray(hand_png(1))
    np.testing.assert_array_equal(r1["image"], ref.preprocess(src, box))
    assert "Error" not in capsys.readouterr().err
    assert (out / "contact_sheet.png").exists()
    assert not (out / ".work").exists()


def test_everything_ok_exits_zero_and_opencv_engine_agrees(archives, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(1, 5):
        (src / f"{i}.png").write_bytes(hand_png(i))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([str(src), "--out", str(a), "--localiser", "native", "--quiet"]) == 0
    assert main([str(src), "--out", str(b), "--localiser", "native", "--engine", "opencv",
                 "--quiet"]) == 0  # fmt: skip
    sa = sorted(p.read_bytes() for p in a.glob("*.tfrecord"))
    sb = sorted(p.read_bytes() for p in b.glob("*.tfrecord"))
    assert sa == sb  # same boxes, bit-exact pixels: identical shards


def test_keep_copies_makes_a_record_of_every_copy_in_its_cases_split(tmp_path):
    """The same films at two sizes (as RSNA's 100 and 299 px copies): with --keep-copies each
    copy is a record, every copy sits in its case's one split (no case in train and val), and
    the splits are those of a run without the copies (they depend on the labels only)."""
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    n = 40
    for i in range(1, n + 1):
        png = hand_png(i)
        (small / f"{i}.png").write_bytes(png)
        if i % 2:
            img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
            big = cv2.resize(img, (299, 299), interpolation=cv2.INTER_LINEAR)
            (large / f"{i}.png").write_bytes(cv2.imencode(".png", big)[1].tobytes())
    (large / "2.png").write_bytes(hand_png(2)[:200])  # a broken copy: skipped, not a record
    rows = [[i, 6 * i, "True" if i % 3 else "False"] for i in range(1, n + 1)]
    labels = write_csv(tmp_path / "l.csv", ["id", "boneage", "male"], rows)
    common = ["--labels", str(labels), "--mode", "squash", "--size", "32",
              "--val-fraction", "0.25", "--seed", "3", "--quiet"]  # fmt: skip
    alone, both, first = tmp_path / "alone", tmp_path / "both", tmp_path / "first"
    assert main([str(small), "--out", str(alone), *common]) == 0
    assert main([str(small), str(large), "--out", str(both), "--keep-copies", *common]) == 1
    assert main([str(small), str(large), "--out", str(first), *common]) == 1

    def records(out: Path) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for split in ("train", "val"):
            files = [str(p) for p in sorted(out.glob(f"{split}-*.tfrecord"))]
            for ex in native.read_examples(files):
                found.setdefault(ex["id"], []).append(split)
        return found

    one, kept, dropped = records(alone), records(both), records(first)
    copied = {str(i) for i in range(1, n + 1, 2)}
    assert {k for k, v in kept.items() if len(v) == 2} == copied
    assert all(len(v) == 1 for k, v in kept.items() if k not in copied)  # 2's copy failed
    assert all(len(set(v)) == 1 for v in kept.values())  # a case never spans two splits
    assert {k: v[0] for k, v in kept.items()} == {k: v[0] for k, v in one.items()}
    assert dropped == one  # without the flag a copy is still a "duplicate id"
    m = read_manifest(first)
    assert any("duplicate id" in r["reason"] for r in m["1"])


def test_missing_input_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err


def test_split_by_is_stratified_and_seeded(tmp_path):
    rows = [[i, (i * 7) % 228 + 1, "True" if i % 2 else "False"] for i in range(1, 401)]
    table = read_labels([write_csv(tmp_path / "l.csv", ["id", "boneage", "male"], rows)])
    fr = parse_fractions("train=0.8,val=0.1,test=0.1")
    a = stratified_split(list(table.labels.values()), fr, seed=1)
    b = stratified_split(list(table.labels.values()), fr, seed=1)
    c = stratified_split(list(table.labels.values()), fr, seed=2)
    assert a == b and a != c
    counts = {s: sum(v == s for v in a.values()) for s in fr}
    assert abs(counts["train"] - 320) <= 8 and abs(counts["val"] - 40) <= 8
    with pytest.raises(ValueError, match="sum to 1"):
        parse_fractions("train=0.5,val=0.1")


def test_resume_after_kill_gives_the_same_shards(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(40):
        (src / f"{i:03d}.png").write_bytes(hand_png(100 + i, 900, 700))
    args = [str(src), "--localiser", "native", "--part-size", "4", "--shards", "3", "--quiet"]
    clean = tmp_path / "clean"
    assert main([*args, "--out", str(clean)]) == 0

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "boneage.preprocess", *args, "--out", str(out), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / ".work").glob("part-*.csv"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / ".work").glob("part-*.csv")))
    assert 3 <= done_before < 10, "the run should have been killed part-way"
    assert not list(out.glob("*-of-*.tfrecord")), "no final shard may exist before the end"

    assert main([*args, "--out", str(out), "--resume"]) == 0
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["parts_resumed"] >= 3
    for a in sorted(clean.glob("*-of-*.tfrecord")):
        assert a.read_bytes() == (out / a.name).read_bytes(), a.name


@pytest.mark.skipif(not (RSNA / "fullres").is_dir(), reason="real RSNA data not found")
def test_real_fullres_radiographs(tmp_path):
    out = tmp_path / "real"
    code = main([str(RSNA / "fullres"), "--labels", str(RSNA / "labels.csv"), "--out", str(out),
                 "--localiser", "native", "--quiet"])  # fmt: skip
    assert code == 1  # labels.csv lists thousands of cases that are not in fullres/
    m = read_manifest(out)
    images = [r for rows in m.values() for r in rows if r["source"].endswith(".png")]
    assert len(images) == 60 and all(r["status"] == "ok" for r in images)
    # The localiser cropped (removed background) in most images.
    assert sum(r["localiser"] == "native" for r in images) >= 50
    n = sum(1 for _ in native.read_examples([str(p) for p in out.glob("*-of-*.tfrecord")]))
    assert n == 60


@pytest.mark.slow
@pytest.mark.skipif(not (RSNA / "fullres").is_dir(), reason="real RSNA data not found")
def test_default_auto_localiser_runs_mediapipe_in_workers(tmp_path):
    """The default ``--localiser auto`` path: MediaPipe in a spawned worker pool, merged with
    the native box where they agree; every record's box matches what ``hands.choose`` gives
    for the same landmarks computed in this process."""
    from boneage.ingest import hands

    src = tmp_path / "films"
    src.mkdir()
    films = sorted((RSNA / "fullres").glob("*.png"))[:8]
    for f in films:
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "auto"
    code = main(
        [
            str(src),
            "--out",
            str(out),
            "--quiet",
            "--workers",
            "2",
            "--size",
            "64",
            "--contact-sheet",
            "0",
        ]
    )  # fmt: skip  (no --localiser: the default)
    assert code == 0
    rows = {r["id"]: r for rows in read_manifest(out).values() for r in rows}
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows.values())
    assert {r["localiser"] for r in rows.values()} <= {
        "mediapipe", "mediapipe+native", "native", "none"
    }  # fmt: skip
    assert any("mediapipe" in r["localiser"] for r in rows.values()), rows
    detector = hands.MediaPipeHands()
    for f in films:
        img = native.read_gray(f)
        found = hands.choose(img, "auto", detector=detector)
        r = rows[f.stem]
        assert (found.localiser, found.box) == (
            r["localiser"], tuple(int(r[k]) for k in ("x0", "y0", "x1", "y1"))
        ), f.name  # fmt: skip
