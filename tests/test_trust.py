"""The trustworthy estimate (issue 32): the 90 % interval, the sex rule, the age and SDS, and
one result schema for every interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boneage.inference.interval import MIN_PER_BAND, Interval, conformal_quantile, fit
from boneage.inference.predictor import NoSexError, choose_sex
from boneage.inference.reference import sd_months
from boneage.ingest.dicom import DicomInfo
from shared_data import rsna_dir


def test_conformal_quantile_covers_the_stated_share():
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 10, 2000)
    h = conformal_quantile(calib, 0.9)
    fresh = rng.normal(0, 10, 20000)
    assert 0.88 < np.mean(np.abs(fresh) <= h) < 0.92


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(2.0, 30.0))
def test_fitted_bands_cover_new_cases_about_90_percent(seed, scale):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 228, 3000)
    est = truth + rng.normal(0, scale, truth.shape) * (1 + truth / 228)  # wider when older
    iv = fit(truth[:1500], est[:1500])
    covered = iv.covers(truth[1500:], est[1500:]).mean()
    assert 0.86 < covered < 0.94
    assert Interval.from_dict(json.loads(json.dumps(iv.to_dict()))) == Interval(
        iv.edges, tuple(round(h, 4) for h in iv.half_widths), iv.level, iv.n
    )


def test_small_bands_are_merged_and_the_interval_never_goes_below_zero():
    truth = np.linspace(100, 200, 200)
    est = truth + np.tile([-5.0, 5.0], 100)
    iv = fit(truth, est)  # nothing under 60 months: that band is merged away
    assert len(iv.half_widths) == len(iv.edges) + 1
    assert all(h == pytest.approx(5.0) for h in iv.half_widths)
    assert iv.around(2.0)[0] == 0.0
    with pytest.raises(ValueError, match="at least"):
        fit(truth[: MIN_PER_BAND - 1], est[: MIN_PER_BAND - 1])


def test_one_sex_rule_explicit_then_labels_then_dicom():
    dicom_f = DicomInfo(male=0)
    assert choose_sex("M", None, dicom_f)[:2] == (1, "given")
    assert "PatientSex says F" in choose_sex("M", None, dicom_f)[2][0]
    assert choose_sex(None, 1, dicom_f)[:2] == (1, "labels")
    assert choose_sex("F", 1, None) == (0, "given", [])
    assert choose_sex(None, None, dicom_f) == (0, "DICOM PatientSex", [])
    assert choose_sex(None, None, None, "M") == (1, "default", [])
    with pytest.raises(NoSexError):
        choose_sex(None, None, DicomInfo())


@pytest.fixture(scope="module")
def predictor():
    from boneage.inference import Predictor

    return Predictor()


@pytest.mark.skipif(not rsna_dir("test299").is_dir(), reason="real RSNA data not found")
def test_an_estimate_carries_its_interval_age_and_sds(predictor):
    film = sorted(rsna_dir("test299").glob("*.png"))[0]
    est = predictor.estimate(film, "F", age_months=100)
    # The shipped ensemble predates the interval (shipping fits it for the next model).
    lo, hi = est.interval_90_months or (-np.inf, np.inf)
    assert lo < est.bone_age_months < hi
    assert est.age is not None
    assert est.age.delta_months == pytest.approx(est.bone_age_months - 100)
    assert est.age.sds == pytest.approx(est.age.delta_months / sd_months(100, False))
    if est.interval_90_months is not None:
        assert est.age.within_interval == (lo <= 100 <= hi)
    d = est.to_dict()
    assert d["sex_source"] == "given" and d["age_source"] == "given"
    assert json.loads(json.dumps(d)) == d  # JSON-safe as it is
    plain = predictor.estimate(film, "F").to_dict()
    assert plain["age_months"] is None and plain["sds"] is None
    assert plain["bone_age_months"] == d["bone_age_months"]


@pytest.mark.skipif(not rsna_dir("test299").is_dir(), reason="real RSNA data not found")
def test_predict_json_is_the_estimate_schema(tmp_path, capsys):
    from boneage.predict import main

    film = sorted(rsna_dir("test299").glob("*.png"))[0]
    assert main([str(film), "--sex", "M", "--age-months", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)[0]
    for key in ("bone_age_months", "interval_90_months", "delta_months", "sds",
                "within_normal_range", "reference", "orientation"):  # fmt: skip
        assert key in out
    assert out["age_months"] == 120
    assert main([str(film), "--sex", "M", "--age-months", "999"]) == 2  # refused up front


# -- the input gate and orientation, wired into every estimate (items 1 and 2) ---------------


def _grey_square() -> np.ndarray:
    return np.full((400, 300), 128, np.uint8)


def test_a_grey_square_is_refused_unless_forced(predictor):
    from boneage.inference import NotAHandRadiograph

    with pytest.raises(NotAHandRadiograph, match=r"^not a hand radiograph \(the image is nearly"):
        predictor.estimate(_grey_square(), "F")
    assert issubclass(NotAHandRadiograph, ValueError)  # callers catching ValueError still do
    forced = predictor.estimate(_grey_square(), "F", force=True)
    assert any("input gate refused the image" in n for n in forced.notes)


def test_a_grey_array_with_a_channel_axis_is_grey_and_non_images_are_value_errors(predictor):
    """Issue 31, item 11: an (H, W, 1) array raised cv2.error (a fault to every interface,
    not bad input); it is the grey image it holds. Shapes that are not images say so."""
    img = np.random.default_rng(11).integers(0, 256, (400, 300), dtype=np.uint8)
    flat = predictor.estimate(img, "F", force=True)
    assert predictor.estimate(img[:, :, None], "F", force=True) == flat
    for bad in ((400, 300, 2), (400,), (1, 400, 300, 1), (0, 300), (400, 300, 0)):
        with pytest.raises(ValueError, match=r"shape \("):
            predictor.estimate(np.zeros(bad, np.uint8), "F", force=True)


def test_an_extremely_thin_image_is_answered_at_once_even_forced(predictor):
    """Issue 31, item 10: the gate refuses a 3,000,000 x 1 image; forced, it is prepared in a
    pass over its pixels (the native resize used to cost its long side squared)."""
    import time

    from boneage.inference import NotAHandRadiograph

    thin = np.random.default_rng(10).integers(0, 256, (3_000_000, 1), dtype=np.uint8)
    start = time.perf_counter()
    with pytest.raises(NotAHandRadiograph, match="3000000"):
        predictor.estimate(thin, "F")
    assert predictor.estimate(thin, "F", force=True).notes
    assert time.perf_counter() - start < 10.0


@pytest.mark.skipif(not rsna_dir("test299").is_dir(), reason="real RSNA data not found")
def test_a_rotated_or_mirrored_film_is_turned_upright(predictor):
    from boneage import _native as native

    film = native.read_gray(sorted(rsna_dir("test299").glob("*.png"))[1])
    upright = predictor.estimate(film, "M")
    assert upright.orientation == "upright" and upright.orientation_confidence is not None
    for turned, words in (
        (np.rot90(film, 1), "rotated 90° counter-clockwise"),  # numpy turns anticlockwise
        (film[:, ::-1], "mirrored (right hand)"),
    ):
        est = predictor.estimate(np.ascontiguousarray(turned), "M")
        assert est.orientation == f"turned upright (arrived {words})"
        assert abs(est.bone_age_months - upright.bone_age_months) < 3.0
        assert any("turned upright" in n for n in est.notes)
    off = type(predictor)(predictor.path, orientation=False)
    assert off.estimate(film, "M").orientation == "as given"


@pytest.mark.skipif(not rsna_dir("test299").is_dir(), reason="real RSNA data not found")
def test_predict_names_the_refused_file_and_estimates_the_others(tmp_path, capsys):
    import cv2

    from boneage.predict import main

    film = sorted(rsna_dir("test299").glob("*.png"))[0]
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), _grey_square())
    assert main([str(film), str(grey), "--sex", "F", "--csv"]) == 1
    out, err = capsys.readouterr()
    assert f"error: {grey}: not a hand radiograph (the image is nearly uniform" in err
    assert film.name in out and "grey.png" not in out
    assert main([str(grey), "--sex", "F", "--force", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "input gate refused" in json.loads(out)[0]["notes"][0]


# -- 16-bit files with a narrow range (item 7) ------------------------------------------------


def test_only_narrow_16_bit_pngs_are_windowed(tmp_path):
    import cv2

    from boneage import _native as native
    from boneage.ingest.dicom import decode, load

    ramp = np.tile(np.arange(0, 4096, 4, dtype=np.uint16), (64, 1))  # 12-bit data
    path = tmp_path / "twelve.png"
    cv2.imwrite(str(path), ramp)
    loaded = load(path)
    assert loaded.image.dtype == np.uint8 and loaded.image.max() == 255  # not 15
    assert "12-bit data" in loaded.notes[0] and "read as 12-bit" in loaded.notes[0]
    assert np.array_equal(decode(path.read_bytes()).image, loaded.image)  # bytes alike
    full = (ramp.astype(np.uint32) * 16).astype(np.uint16)  # uses the high bits: OpenCV's
    cv2.imwrite(str(path), full)
    assert load(path).notes == ()
    assert np.array_equal(load(path).image, native.read_gray(path))
    assert np.array_equal(load(path).image, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))


@pytest.mark.skipif(not rsna_dir("train299").is_dir(), reason="real RSNA data not found")
def test_a_12_bit_export_gets_about_the_8_bit_films_estimate(predictor, tmp_path):
    import cv2

    from boneage import _native as native

    film_path = sorted(rsna_dir("train299").glob("*.png"))[2]
    film = native.read_gray(film_path)
    twelve = tmp_path / "twelve.png"
    cv2.imwrite(str(twelve), film.astype(np.uint16) * 16)  # 0..4080
    want = predictor.estimate(film_path, "F")
    got = predictor.estimate(twelve, "F")
    assert abs(got.bone_age_months - want.bone_age_months) < 4.0
    assert any("12-bit data" in n for n in got.notes)
