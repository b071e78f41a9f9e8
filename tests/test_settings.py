"""Preprocessing settings travel with the data: preprocess writes them, train reads them,
the model embeds them, the Predictor applies them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneage import _native as native
from boneage.settings import SETTINGS_FILE, Preprocessing
from shared_data import full_films_with_copies, rsna_dir


def test_round_trip_and_validation(tmp_path):
    pp = Preprocessing(image_size=100, clip_limit=3.0, tile_grid=(4, 6), localiser="none",
                       mode="squash")  # fmt: skip
    pp.write(tmp_path)
    assert Preprocessing.read(tmp_path) == pp
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["tile_grid"] == [4, 6]
    assert Preprocessing.read(tmp_path / "elsewhere") is None
    with pytest.raises(ValueError, match="mode"):
        Preprocessing(mode="stretch")
    with pytest.raises(ValueError, match="localiser"):
        Preprocessing(localiser="psychic")
    with pytest.raises(ValueError, match="squash"):
        Preprocessing(mode="squash", localiser="auto")
    with pytest.raises(ValueError, match="interpolation"):
        Preprocessing(mode="squash", localiser="none", interpolation="lanczos")
    with pytest.raises(ValueError, match="applies to the squash mode"):
        Preprocessing(interpolation="linear")
    # Files written before the filter was recorded were area-resized, and read as such.
    legacy = {k: v for k, v in pp.to_dict().items() if k != "interpolation"}
    assert Preprocessing.from_dict(legacy).interpolation == "area"
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=SETTINGS_FILE):
        Preprocessing.read(tmp_path)


def test_flags_may_repeat_but_not_override():
    pp = Preprocessing(image_size=64, clip_limit=3.0)
    pp.check_flags(image_size=64, clip_limit=3.0, tile_grid=(8, 8), localiser=None, mode=None)
    with pytest.raises(ValueError, match=r"--clip-limit 2.0 \(the data says 3.0\)"):
        pp.check_flags(clip_limit=2.0)
    with pytest.raises(ValueError, match="--image-size"):
        pp.check_flags(image_size=256)


def test_squash_is_resolution_independent():
    """Squash mode resizes before CLAHE, so a real film and its third-size copy prepare
    alike (within about a grey level; equalising first, then resizing, does worse)."""
    from boneage.ingest.preparation import squash

    pp = Preprocessing(image_size=100, localiser="none", mode="squash")
    diffs = []
    for film in sorted(rsna_dir("fullres").glob("*.png"))[:5]:
        big = native.read_gray(film)
        h, w = big.shape
        small = native.resize_area(big, w // 3, h // 3)
        a, b = squash(big, pp).astype(int), squash(small, pp).astype(int)
        assert a.shape == (100, 100)
        diffs.append(np.mean(np.abs(a - b)))
    assert np.mean(diffs) < 1.5, diffs


@pytest.mark.parametrize("interpolation", ["area", "linear"])
def test_squash_filter_is_opencvs(interpolation):
    """The squash mode's resize is OpenCV's INTER_AREA or INTER_LINEAR, as the settings say,
    bit for bit, on real films of several sizes."""
    from boneage.ingest import reference
    from boneage.ingest.preparation import squash

    pp = Preprocessing(image_size=100, localiser="none", mode="squash",
                       interpolation=interpolation)  # fmt: skip
    films = (
        sorted(rsna_dir("fullres").glob("*.png"))[:2]
        + sorted(rsna_dir("test299").glob("*.png"))[:2]
    )
    for film in films:
        img = native.read_gray(film)
        np.testing.assert_array_equal(squash(img, pp), reference.squash(img, pp))


def test_linear_squash_reproduces_the_public_100px_copies():
    """The public train100 copies were made by a plain bilinear resize of the full film:
    INTER_LINEAR reproduces them several times more closely than INTER_AREA (the measurement
    behind ``interpolation``; benches/fullres_consistency.py reports it on all 41 films)."""
    full = full_films_with_copies(6)
    diff: dict[str, list[float]] = {"area": [], "linear": []}
    for big, copy in full:
        img, ref = native.read_gray(big), native.read_gray(copy).astype(int)
        diff["area"].append(np.mean(np.abs(native.resize_area(img, 100, 100) - ref)))
        diff["linear"].append(np.mean(np.abs(native.resize_linear(img, 100, 100) - ref)))
    assert np.mean(diff["linear"]) < 1.0 < 1.5 < np.mean(diff["area"]), diff


@pytest.mark.slow
def test_settings_travel_from_shards_to_predictions(tmp_path):
    """Shards made with --clip-limit 3 --size 64 and trained with no preprocessing flags give
    a model that says 3 and 64 and predicts on a real film exactly as hand preprocessing."""
    from boneage.inference import Predictor
    from boneage.preprocess import main as preprocess_main
    from boneage.training.loop import TrainConfig, train

    train100 = rsna_dir("train100")
    src = tmp_path / "imgs"
    src.mkdir()
    for f in sorted(train100.glob("*.png"))[:160]:
        (src / f.name).write_bytes(f.read_bytes())
    data = tmp_path / "shards"
    labels = str(train100.parent / "labels.csv")
    code = preprocess_main([str(src), "--labels", labels, "--out", str(data), "--quiet",
                            "--clip-limit", "3", "--image-size", "64", "--localiser", "none",
                            "--split-by", "train=0.8,val=0.2", "--contact-sheet", "0"])  # fmt: skip
    assert code in (0, 1)
    assert Preprocessing.read(data) == Preprocessing(image_size=64, clip_limit=3.0,
                                                     localiser="none")  # fmt: skip

    cfg = TrainConfig(model="small_cnn", data=str(data), out=str(tmp_path / "run"),
                      batch_size=32, epochs=1, verbose=0)  # fmt: skip
    train(cfg)
    pred = Predictor(tmp_path / "run")
    assert pred.meta.preprocessing.clip_limit == 3.0
    assert pred.meta.preprocessing.image_size == 64

    film = sorted(rsna_dir("fullres").glob("*.png"))[0]
    img = native.read_gray(film)
    by_hand = native.preprocess(img, None, 64, 3.0, (8, 8))
    from boneage.inference import predict_arrays

    expected, _ = predict_arrays(pred.model, by_hand[None], np.array([1.0], np.float32))
    assert pred.predict(film, male=True) == pytest.approx(float(expected[0]), abs=1e-4)

    # A flag that disagrees with the data is refused, not obeyed.
    bad = TrainConfig(model="small_cnn", data=str(data), out=str(tmp_path / "bad"),
                      batch_size=32, epochs=1, verbose=0,
                      preprocessing={"clip_limit": 2.0})  # fmt: skip
    with pytest.raises(ValueError, match="clip-limit"):
        train(bad)
