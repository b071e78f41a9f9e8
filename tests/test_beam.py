"""``--engine beam``: the bulk job as an Apache Beam pipeline gives the local engine's output.

The real-data tests run the Python DirectRunner in multi-process mode on 2 workers (Beam's
Prism runner would download a binary at run time, which cannot be fetched here), on real
radiographs from ../shared/data/rsna: full-resolution films and 299 px test images in a
folder, a zip that repeats some of them (duplicates across and within parts), a tar.gz, a
truncated film whose id a good copy in the zip then takes, and a non-image.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from boneage import _native as native
from boneage.preprocess import main
from shared_data import RSNA, rsna_dir

REPO = Path(__file__).resolve().parents[1]
TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _needs_beam() -> None:
    pytest.importorskip("apache_beam", reason="apache-beam not installed (pip install '.[beam]')")


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folder + zip + tar.gz of real radiographs, with duplicates and damaged files."""
    fullres = sorted(rsna_dir("fullres").glob("*.png"))
    small = sorted(rsna_dir("test299").glob("*.png"))
    base = tmp_path_factory.mktemp("beam_inputs")
    films = base / "films"
    films.mkdir()
    for f in fullres[:8] + small[:8]:
        (films / f.name).write_bytes(f.read_bytes())
    # A cut copy of a film that is not in the folder: its decode fails, so the good copy in
    # the zip (a later part) takes the id.
    late = fullres[9]
    (films / late.name).write_bytes(late.read_bytes()[:5000])
    (films / "notes.txt").write_text("not an image")
    zpath = base / "more.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        for f in fullres[2:5]:  # also in the folder: duplicates in a later part
            zf.write(f, f"copies/{f.name}")
        zf.write(late, f"good/{late.name}")
        zf.write(fullres[10], f"a/{fullres[10].name}")
        zf.write(fullres[10], f"b/{fullres[10].name}")  # two copies in one part
        zf.writestr("broken/77777.png", fullres[11].read_bytes()[:3000])
    tpath = base / "extra.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        for f in small[8:10]:
            data = f.read_bytes()
            info = tarfile.TarInfo(f"extra/{f.name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return {"films": films, "zip": zpath, "tar": tpath, "labels": RSNA / "labels.csv"}


def _args(inputs: dict[str, Path], out: Path) -> list[str]:
    return [
        str(inputs["films"]), str(inputs["zip"]), str(inputs["tar"]),
        "--labels", str(inputs["labels"]), "--out", str(out), "--localiser", "native",
        "--part-size", "5", "--shards", "3", "--quiet", "--contact-sheet", "8",
    ]  # fmt: skip


def _same_outputs(a: Path, b: Path) -> list[str]:
    """Shard files, manifest and settings byte-identical; summary equal but for timing and
    the output folder's name. Returns the shard names compared."""
    shards = sorted(p.name for p in a.glob("*-of-*.tfrecord*"))
    assert shards == sorted(p.name for p in b.glob("*-of-*.tfrecord*"))
    for name in [*shards, "manifest.csv", "preprocessing.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        del s["seconds"], s["images_per_s"]
    text_b = json.dumps(sb).replace(str(b), str(a))
    assert json.loads(text_b) == sa
    assert not list(b.glob(".*")), "temporaries or work files left behind"
    return shards


@pytest.mark.slow
def test_beam_on_two_workers_gives_the_local_engines_shards_and_manifest(real_inputs, tmp_path):
    _needs_beam()
    local, beam = tmp_path / "local", tmp_path / "beam"
    assert main(_args(real_inputs, local)) == 1  # finished, some inputs skipped
    assert main([*_args(real_inputs, beam), "--engine", "beam", *TWO_WORKERS]) == 1
    shards = _same_outputs(local, beam)
    assert len(shards) == 9  # train, val, test x 3 (empty ones published too)
    # The output is what it should be, not only equal: the rules held on real films.
    with (beam / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))  # one per input and per label without an image
    ok = [r for r in rows if r["status"] == "ok"]
    by_source = {r["source"]: r for r in rows}
    assert len(ok) == 8 + 8 + 2 + 1 + 1  # folder films, zip's late + one b-copy pair, tar
    late = next(p.name for p in (real_inputs["films"]).glob("*.png") if p.stat().st_size == 5000)
    assert by_source[str(real_inputs["films"] / late)]["status"] == "skipped"
    assert by_source[f"{real_inputs['zip']}!good/{late}"]["status"] == "ok"
    dups = [r for r in rows if r["reason"].startswith("duplicate id")]
    assert len(dups) == 4  # 3 copies of folder films, the second in-zip copy
    assert "corrupt" in by_source[f"{real_inputs['zip']}!broken/77777.png"]["reason"]
    assert "not an image" in by_source[str(real_inputs["films"] / "notes.txt")]["reason"]
    # Each record is in the shard the writer's own FNV-1a hash names, once.
    seen: list[str] = []
    for name in shards:
        split, index = name.split("-")[0], int(name.split("-")[1])
        for ex in native.read_examples(str(beam / name)):
            assert native.shard_index(ex["id"], 3) == index and ex["split"] == split
            seen.append(ex["id"])
    assert sorted(seen) == sorted(r["id"] for r in ok)


@pytest.mark.slow
def test_a_bundle_failing_once_is_retried_without_duplicates_or_losses(real_inputs, tmp_path):
    """The Python DirectRunner's multi-process mode fails the job on a failed bundle; its
    BundleBasedDirectRunner retries it (as Dataflow, Flink and Spark do), keeping only the
    successful attempt's output. One bundle of the per-part step and one of the shard writer
    fail midway, once each; the result is the clean run's, byte for byte."""
    _needs_beam()
    clean, retried = tmp_path / "clean", tmp_path / "retried"
    assert main(_args(real_inputs, clean)) == 1
    retried.mkdir()
    stale = retried / ".train-00000-of-00003.tfrecord.tmp-999999-0"  # a killed writer's
    stale.write_bytes(b"partial")
    markers = tmp_path / "process.marker", tmp_path / "write.marker"
    env = {"BONEAGE_BEAM_FAIL_ONCE": f"process:{markers[0]},write:{markers[1]}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        code = main([*_args(real_inputs, retried), "--engine", "beam",
                     "--runner=BundleBasedDirectRunner"])  # fmt: skip
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert code == 1
    assert all(m.exists() for m in markers), "the injected failures did not happen"
    _same_outputs(clean, retried)


@pytest.mark.slow
def test_gzip_shards_match_too(tmp_path):
    _needs_beam()
    films = sorted(rsna_dir("test299").glob("*.png"))[:6]
    local, beam = tmp_path / "local", tmp_path / "beam"
    common = [*map(str, films), "--localiser", "native", "--gzip", "--part-size", "2", "--quiet"]
    assert main([*common, "--out", str(local)]) == 0
    assert main([*common, "--out", str(beam), "--engine", "beam", *TWO_WORKERS]) == 0
    assert _same_outputs(local, beam) == ["unlabeled-00000-of-00001.tfrecord.gz"]


def test_keep_copies_gives_the_local_engines_records_too(tmp_path):
    """With --keep-copies a copy in a later part is a record, under Beam as locally (the
    cross-part duplicate settling must stand aside, not read it as a claimed copy)."""
    _needs_beam()
    films = sorted(rsna_dir("test299").glob("*.png"))[:4]
    again = tmp_path / "again"
    again.mkdir()
    for f in films[:3]:
        (again / f.name).write_bytes(f.read_bytes())
    local, beam = tmp_path / "local", tmp_path / "beam"
    common = [*map(str, films), str(again), "--localiser", "native", "--part-size", "2",
              "--keep-copies", "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(local)]) == 0
    assert main([*common, "--out", str(beam), "--engine", "beam", *TWO_WORKERS]) == 0
    shards = _same_outputs(local, beam)
    ids = [ex["id"] for name in shards for ex in native.read_examples(str(beam / name))]
    assert len(ids) == 7 and len(set(ids)) == 4


def test_default_engine_and_import_do_not_load_beam(tmp_path):
    films = sorted((RSNA / "test299").glob("*.png"))[:1]
    if not films:
        pytest.skip(f"real RSNA data not found at {RSNA / 'test299'}")
    code = (
        "import sys, boneage\n"
        "from boneage.preprocess import main\n"
        f"rc = main([{str(films[0])!r}, '--out', {str(tmp_path / 'o')!r}, '--localiser', "
        "'native', '--quiet'])\n"
        "assert rc == 0, rc\n"
        "print('apache_beam' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_beam_engine_without_beam_names_the_extra(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "apache_beam" else real(n, *a)
    )
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "beam"])
    assert e.value.code == 2
    assert "pip install 'boneage[beam]'" in capsys.readouterr().err


def test_beam_options_are_for_the_beam_engine_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--out", str(tmp_path / "o"), "--runner=DirectRunner"])
    assert e.value.code == 2
    assert "unrecognized arguments: --runner=DirectRunner" in capsys.readouterr().err


def test_bad_beam_options_and_resume_are_refused(tmp_path, capsys):
    _needs_beam()
    base = [str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "beam"]
    assert main([*base, "--no_such_beam_flag=1"]) == 2
    assert "unknown option(s) --no_such_beam_flag" in capsys.readouterr().err
    assert main([*base, "--runner", "DirectRunner"]) == 2
    assert "--runner=VALUE" in capsys.readouterr().err
    assert main([*base, "--resume"]) == 2
    assert "--resume is for the local engines" in capsys.readouterr().err
