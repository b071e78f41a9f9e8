"""Throughput of the bulk job on Apache Beam vs the local engine, on the same real films.

Run: ``pytest benches/bench_beam.py --benchmark-only``. Both benchmarks run the same job
(decode, native localiser, crop, CLAHE, pad, resize, shards, manifest) on the 60
full-resolution radiographs in ../shared/data/rsna/fullres, in one pytest run, and check that
the outputs are byte-identical. The local engine runs as it does by default (one part, native
threads over all cores); the Beam job on the Python DirectRunner in multi-process mode with 2
worker processes and parts of 8 films (so that both workers get work). Beam's time includes
what a real run pays: starting the pipeline and its worker processes, the shuffles, and the
driver's listing and finishing.

The summary line is the Beam job's speed as a fraction of the local engine's. Its target only
guards against a collapse: on one machine Beam cannot be faster than the local engine (the
same work plus the pipeline's overhead); it exists to go past one machine.

``BONEAGE_BENCH_SMOKE=1`` (see :mod:`benchkit`): the first 6 films, one round each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchkit import ratio, record, run, sized
from boneage.ingest.bulk import Options
from boneage.ingest.bulk import run as bulk_run
from boneage.settings import Preprocessing

RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna"
N_FILMS = sized(60, 6)
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
BEAM_PART_SIZE = sized(8, 2)

ratio("bulk job: Beam (DirectRunner, 2 processes) speed / local engine speed", "bulk_local",
      "bulk_beam", 0.2)  # fmt: skip
OUTPUTS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def films() -> list[str]:
    path = RSNA / "fullres"
    if not path.is_dir():
        pytest.skip(f"real radiographs not found at {path}")
    return [str(f) for f in sorted(path.glob("*.png"))][:N_FILMS]


@pytest.mark.benchmark(group=f"bulk job on fullres/ ({N_FILMS} radiographs), local vs Beam")
@pytest.mark.parametrize("engine", ["local", "beam"])
def test_bulk_job_engines(benchmark, films, tmp_path_factory, engine):
    if engine == "beam":
        pytest.importorskip("apache_beam", reason="apache-beam not installed")
        from boneage.ingest import beam
    out = tmp_path_factory.mktemp(f"bench_{engine}") / "out"

    def job() -> int:
        shutil.rmtree(out, ignore_errors=True)
        opts = Options(
            inputs=films,
            out=str(out),
            preprocessing=Preprocessing(localiser="native"),
            progress=False,
            sheet=0,
        )
        if engine == "local":
            return bulk_run(opts).ok
        opts.part_size = BEAM_PART_SIZE
        return beam.run(opts, BEAM_ARGS).ok

    ok = run(benchmark, job, rounds=2)
    assert ok == N_FILMS
    seconds = record(benchmark, f"bulk_{engine}")
    benchmark.extra_info["images_per_s"] = ok / seconds
    print(f"\n{engine}: {ok / seconds:.2f} images/s ({seconds:.1f} s for {ok} films)")
    OUTPUTS[engine] = out
    if len(OUTPUTS) == 2:  # the second engine of the run: same shards, same manifest
        a, b = OUTPUTS["local"], OUTPUTS["beam"]
        names = sorted(p.name for p in a.glob("*.tfrecord*"))
        assert names == sorted(p.name for p in b.glob("*.tfrecord*"))
        for name in [*names, "manifest.csv"]:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
