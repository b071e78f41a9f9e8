"""The bulk job meets the native core's hostile-input rules (issue 11): a truncated JPEG and an
image thinner than any radiograph become skipped rows with their reason; good files are kept."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared_data import image_files
from test_hostile_inputs import run, table


def _thin_png(width: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    ihdr = width.to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\x00" * (width + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_bulk_job_skips_truncated_jpegs_and_thin_images(tmp_path: Path, capsys) -> None:
    jpegs = [p for p in image_files("unlabeled") if p.read_bytes()[:2] == b"\xff\xd8"]
    if not jpegs:
        pytest.skip("no real RSNA JPEG under ../shared/data/rsna/unlabeled")
    data = jpegs[0].read_bytes()
    src = tmp_path / "films"
    src.mkdir()
    (src / "1.jpg").write_bytes(data[: len(data) // 2])
    (src / "2.png").write_bytes(_thin_png(20_000_000))
    ok, good = cv2.imencode(".png", np.full((60, 50), 90, np.uint8))
    assert ok
    (src / "3.png").write_bytes(good.tobytes())
    code, rows, _ = run(capsys, src, "--out", tmp_path / "out")
    assert code == 1  # finished, some skipped
    assert table(rows) == [("1", "skipped"), ("2", "skipped"), ("3", "ok")]
    assert "Premature end of JPEG file" in rows[0]["reason"]
    assert "20000000x1" in rows[1]["reason"] and "radiograph" in rows[1]["reason"]
