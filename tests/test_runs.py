"""RunDir: the one owner of a run folder's file names and formats."""

from __future__ import annotations

import math

import pytest

from boneage.runs import RunDir


def test_config_and_state_round_trip(tmp_path):
    run = RunDir(tmp_path)
    assert not run.has_config() and run.data() is None and not run.can_resume()
    run.write_config({"data": "data/rsna", "epochs": 3})
    assert run.read_config() == {"data": "data/rsna", "epochs": 3}
    assert run.data() == "data/rsna"
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, then renamed
    run.write_state(2, 9.5)
    assert run.read_state() == (2, 9.5)
    run.write_state(1, math.inf)
    assert run.read_state() == (1, math.inf)
    run.last.write_bytes(b"x")
    assert run.can_resume()


def test_model_file_prefers_best_and_of_finds_the_run(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no best\.keras or last\.keras"):
        run.model_file()
    run.last.write_bytes(b"x")
    assert run.model_file() == run.last
    run.best.write_bytes(b"x")
    assert run.model_file() == run.best
    assert RunDir.of(run.best) == run and RunDir.of(tmp_path) == run


def test_a_config_that_is_not_one_is_refused(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        run.read_config()
    run.config_file.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a run configuration"):
        run.read_config()
