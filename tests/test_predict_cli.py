"""``python -m boneage.predict`` over folders and long runs (issue 31, items 6, 8 and 12):
every file a folder holds is estimated or named with its reason, each estimate is printed
as soon as it is made, an interrupted run keeps valid output, and error lines name the
file once."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import cv2
import pytest

from boneage.inference import Predictor
from boneage.predict import main
from shared_data import rsna_dir


@pytest.fixture(scope="module")
def film() -> Path:
    return sorted(rsna_dir("test299").glob("*.png"))[0]


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Predictor.estimate works for ``n`` images, then the user presses Ctrl-C."""
    real = Predictor.estimate
    calls = {"n": 0}

    def estimate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > n:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "estimate", estimate)


def _films(folder: Path, film: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        (folder / f"{i}.png").write_bytes(film.read_bytes())


def test_a_folder_names_every_file_it_cannot_estimate(film, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    img = cv2.imread(str(film), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "a.jpg"), img)
    (folder / "f").write_bytes(film.read_bytes())  # a PNG exported without its extension
    for suffix in (".tif", ".webp", ".bmp"):
        cv2.imwrite(str(folder / f"b{suffix}"), img)
    os.symlink(tmp_path / "gone.png", folder / "e.png")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: not an input
    code = main([str(folder), "--sex", "F", "--csv"])
    out, err = capsys.readouterr()
    assert code == 1
    assert [Path(r["source"]).name for r in csv.DictReader(io.StringIO(out))] == ["a.jpg", "f"]
    for suffix in (".tif", ".webp", ".bmp"):
        want = f"error: {folder / ('b' + suffix)}: unsupported image format {suffix} "
        assert want + "(PNG, JPEG or DICOM)" in err
    assert f"error: {folder / 'e.png'}: dangling link" in err
    assert ".DS_Store" not in err and err.count("error: ") == 4


@pytest.mark.parametrize("fmt", ["--json", "--csv", "table"])
def test_an_interrupted_run_keeps_what_it_estimated(fmt, film, tmp_path, capsys, monkeypatch):
    _films(tmp_path / "in", film, 4)
    _interrupt_after(monkeypatch, 2)
    args = [str(tmp_path / "in"), "--sex", "F", "--age-months", "120"]
    code = main(args + ([] if fmt == "table" else [fmt]))
    out, _ = capsys.readouterr()
    assert code == 130
    if fmt == "--json":
        rows = json.loads(out)  # still valid JSON: the array was closed
        assert [Path(r["source"]).name for r in rows] == ["0.png", "1.png"]
    elif fmt == "--csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [Path(r["source"]).name for r in rows] == ["0.png", "1.png"]
    else:
        lines = out.splitlines()
        assert lines[0].startswith("image") and "SDS" in lines[0]  # age columns up front
        assert [line.split()[0] for line in lines[1:3]] == ["0.png", "1.png"]


def test_each_estimate_is_printed_as_it_is_made(film, tmp_path, capsys, monkeypatch):
    """The first row is on stdout before the second image is read."""
    _films(tmp_path / "in", film, 2)
    real = Predictor.estimate
    seen: list[str] = []

    def estimate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(capsys.readouterr().out)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "estimate", estimate)
    assert main([str(tmp_path / "in"), "--sex", "F", "--json"]) == 0
    assert seen[0].strip() == "[" and '"0.png"' not in seen[0]
    assert "0.png" in seen[1]


def test_the_progress_bar_is_on_a_terminal_stderr_only(film, tmp_path, capsys, monkeypatch):
    _films(tmp_path / "in", film, 2)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([str(tmp_path / "in"), "--sex", "F", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "predict" in err and "2/2" in err
    assert len(json.loads(out)) == 2  # stdout holds the output alone


def test_an_error_line_names_the_file_once(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "a.png"
    bad.write_bytes(b"x")

    def estimate(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(f"{path}: corrupt PNG")

    monkeypatch.setattr(Predictor, "estimate", estimate)
    assert main([str(bad), str(tmp_path / "missing.png"), "--sex", "F"]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: corrupt PNG\n" in err
    monkeypatch.undo()
    assert main([str(tmp_path / "missing.png"), "--sex", "F"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'missing.png'}: No such file or directory\n"
