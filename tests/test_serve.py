"""The web app's API (boneage.serve) through FastAPI's test client: the happy path on real
radiographs (PNG and DICOM), every error path, concurrent requests, no files left behind,
and pages that load nothing from elsewhere. The real-browser test is test_webapp_browser.py.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web app needs the serve extra: pip install '.[serve]'")
pytest.importorskip("python_multipart", reason="the web app needs python-multipart")

from fastapi.testclient import TestClient

from boneage.serve import create_app, years_and_months
from shared_data import image_files, rsna_dir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SECRET_NAME = "Zqxserve^Fhqwhgads"


@pytest.fixture(scope="module")
def app():
    return create_app()


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def radiographs():
    rsna_dir("fullres")
    big = max(image_files("fullres"), key=lambda p: p.stat().st_size)  # > 1 MB: would spool
    return [big, *image_files("test299")[:2]]


def post(
    client,
    data: bytes | None,
    sex: str | None = "F",
    age: str | None = None,
    force: str | None = None,
    **kw,
):
    files = {"file": ("hand.png", data, "image/png")} if data is not None else None
    fields = {
        k: v for k, v in (("sex", sex), ("age_months", age), ("force", force)) if v is not None
    }
    return client.post("/api/predict", files=files, data=fields, **kw)


def decode_png(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


# --------------------------------------------------------------------------- happy paths


def test_health_names_the_model_and_the_limits(client, app):
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    predictor = app.state.service.predictor
    assert h["status"] == "ok" and h["backend"] in ("tensorflow", "jax")
    assert h["model"]["file"] == predictor.path.name
    assert h["model"]["preprocessing"] == predictor.meta.preprocessing.to_dict()
    assert h["max_upload_bytes"] == 50 * 2**20 and h["max_pixels"] == 100_000_000


def test_predict_on_a_real_radiograph(client, app, radiographs):
    path = radiographs[0]
    assert path.stat().st_size > 2**20
    r = post(client, path.read_bytes(), "F", "120")
    assert r.status_code == 200, r.text
    j = r.json()
    predictor = app.state.service.predictor
    est = predictor.estimate(path, "F")
    assert j["bone_age_months"] == est.months  # the number predict prints, TTA included
    assert j["bone_age_years"] == pytest.approx(est.months / 12)
    assert j["bone_age"] == years_and_months(est.months)
    assert j["bone_age"]["years"] * 12 + j["bone_age"]["months"] == round(est.months)
    assert j["delta_months"] == pytest.approx(est.months - 120)
    assert j["age_months"] == 120 and j["sex"] == "F"
    assert j["sigma_months"] is None  # the shipped model has no uncertainty head
    h, w = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
    assert j["image_size"] == {"width": w, "height": h}
    assert j["crop_box"] == dict(zip(("x0", "y0", "x1", "y1"), est.box, strict=True))
    assert j["model"]["name"] == predictor.meta.model_name and j["model"]["tta"] == predictor.tta
    assert j["model"]["preprocessing"]["mode"] == "squash"
    assert j["explanation"]["direction"] in ("raised", "lowered")
    heat, prepared, source = (
        decode_png(j[k]) for k in ("heatmap_png", "prepared_png", "source_png")
    )
    assert heat.shape == (400, 400, 3) and prepared.shape == (400, 400)
    assert max(source.shape[:2]) == 480 and source.shape[2] == 3
    # The heatmap is coloured (not the grey image); the film has no crop box drawn, since
    # this squash model takes the whole film (test_the_preview_draws_the_crop_box_only_...).
    assert np.abs(heat[..., 2].astype(int) - heat[..., 0]).max() > 60
    orange = (source[..., 2] > 200) & (source[..., 1] > 100) & (source[..., 0] < 60)
    assert orange.sum() == 0 and j["localiser"] == "none"


def test_without_age_there_is_no_delta(client, radiographs):
    j = post(client, radiographs[1].read_bytes(), "M").json()
    assert j["age_months"] is None and j["delta_months"] is None and j["sex"] == "M"


def test_years_and_months_round_to_the_month():
    assert years_and_months(123.4) == {"years": 10, "months": 3}
    assert years_and_months(131.6) == {"years": 11, "months": 0}
    assert years_and_months(-2.0) == {"years": 0, "months": 0}


def test_a_dicom_upload_gives_its_pngs_estimate_and_no_identifier(client, radiographs):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    png = radiographs[1]
    pixels = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = ComputedRadiographyImageStorage, uid, "CR"
    ds.PatientName, ds.PatientSex = SECRET_NAME, "F"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    r = client.post(
        "/api/predict",
        files={"file": ("IM0001", buf.getvalue(), "application/dicom")},
        data={"sex": "F"},
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["bone_age_months"] == post(client, png.read_bytes(), "F").json()["bone_age_months"]
    )
    assert "Zqxserve" not in r.text and "Fhqwhgads" not in r.text


# --------------------------------------------------------------------------- errors


def _error(r, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


def test_a_body_that_is_not_a_form_is_415(client):
    _error(client.post("/api/predict", json={"sex": "F"}), 415, "not_multipart")
    _error(client.post("/api/predict", content=b"x"), 415, "not_multipart")


def test_missing_fields_are_named(client, radiographs):
    # A multipart form without a 'file' part (a form with no file at all is not multipart).
    r = client.post("/api/predict", files={"other": ("a.txt", b"x")}, data={"sex": "F"})
    assert "file" in _error(r, 422, "missing_field")
    _error(post(client, None, "F"), 415, "not_multipart")
    assert "sex" in _error(post(client, radiographs[1].read_bytes(), None), 422, "missing_field")
    # A blank sex is no sex: a PNG has no PatientSex to fall back on.
    assert "sex" in _error(post(client, radiographs[1].read_bytes(), ""), 422, "missing_field")


@pytest.mark.parametrize("sex", ["X", "male", "1", "MF"])
def test_a_sex_other_than_m_or_f_is_refused(client, radiographs, sex):
    _error(post(client, radiographs[1].read_bytes(), sex), 422, "bad_sex")


def test_sex_is_case_and_space_insensitive(client, radiographs):
    assert post(client, radiographs[1].read_bytes(), " f ").status_code == 200


@pytest.mark.parametrize("age", ["abc", "-1", "nan", "inf", "301", "12 months"])
def test_a_bad_age_is_refused(client, radiographs, age):
    _error(post(client, radiographs[1].read_bytes(), "F", age), 422, "bad_age")


def test_a_blank_age_means_none(client, radiographs):
    assert post(client, radiographs[1].read_bytes(), "F", " ").json()["delta_months"] is None


def test_bad_files_are_422_with_the_reason(client, radiographs):
    _error(post(client, b""), 422, "empty_file")
    assert "PNG or JPEG" in _error(post(client, b"not an image at all"), 422, "bad_file")
    data = radiographs[1].read_bytes()
    _error(post(client, data[: len(data) // 2]), 422, "bad_file")  # a truncated PNG
    _error(post(client, b"\0" * 128 + b"DICM" + b"\0" * 64), 422, "bad_file")  # a broken DICOM


def test_an_upload_over_the_limit_is_413_without_reading_it_all(radiographs):
    small = create_app(app_predictor(), max_upload_mb=0.05, warm_up=False)  # 50 KB
    with TestClient(small) as c:
        data = radiographs[0].read_bytes()  # > 1 MB
        assert "limit" in _error(post(c, data), 413, "too_large")
        # A body that does not declare its length is cut off while it streams in.
        boundary = "b0undary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="sex"\r\n\r\nF\r\n'.encode(),
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="a.png"\r\n\r\n'.encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        r = c.post(
            "/api/predict",
            content=iter(parts),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert "content-length" not in {k.lower() for k in r.request.headers}
        _error(r, 413, "too_large")
        # Under the limit is fine: a 100 px corner of a radiograph is a few KB (forced past
        # the input gate, which rightly refuses a corner: the limit is what is tested here).
        small_png = cv2.imencode(".png", cv2.imread(str(radiographs[1]), 0)[:100, :100])[1]
        assert post(c, small_png.tobytes(), force="true").status_code == 200


def test_a_text_field_over_its_limit_is_413(client, radiographs):
    _error(post(client, radiographs[1].read_bytes(), "F" * 2000), 413, "field_too_large")


def test_the_pixel_limit_is_the_decoders_and_applies_to_dicom_too(radiographs):
    tight = create_app(app_predictor(), max_pixels=10_000, warm_up=False)
    with TestClient(tight) as c:
        detail = _error(post(c, radiographs[1].read_bytes()), 413, "too_many_pixels")
        assert "10000" in detail
        ok = cv2.imencode(".png", np.full((90, 90), 100, np.uint8))[1].tobytes()
        assert post(c, ok, force="true").status_code == 200  # blank: past the gate


def test_unknown_routes_and_methods_are_json(client):
    assert client.get("/nope").json()["code"] == "not_found"
    r = client.get("/api/predict")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert client.get("/static/../serve.py").status_code == 404


# --------------------------------------------------------------------------- concurrency, disk


def test_concurrent_requests_get_their_own_answers(client, radiographs):
    cases = [(p, s) for p in radiographs for s in ("F", "M")]
    expected = {c: post(client, c[0].read_bytes(), c[1]).json()["bone_age_months"] for c in cases}
    assert len(set(expected.values())) == len(cases)  # a mix-up could not go unnoticed
    jobs = cases * 3
    rng = np.random.default_rng(0)
    jobs = [jobs[i] for i in rng.permutation(len(jobs))]

    def one(case):
        r = post(client, case[0].read_bytes(), case[1])
        assert r.status_code == 200, r.text
        return case, r.json()["bone_age_months"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        for case, months in pool.map(one, jobs):
            assert months == expected[case], case


def test_nothing_uploaded_is_written_to_disk(client, radiographs, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    cwd_before = set(os.listdir("."))
    for p in radiographs:
        assert post(client, p.read_bytes(), "F").status_code == 200
    assert post(client, b"garbage").status_code == 422
    assert list(scratch.iterdir()) == []
    assert set(os.listdir(".")) == cwd_before


# --------------------------------------------------------------------------- pages, schema


def test_pages_load_nothing_from_elsewhere(client):
    for path in ("/", "/docs", "/static/app.js", "/static/app.css", "/static/docs.js"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text), path
        for host in ("jsdelivr", "unpkg", "cdnjs", "googleapis", "cloudflare"):
            assert host not in r.text.lower(), (path, host)
    page = client.get("/").text
    for element in ("file", "sex-F", "sex-M", "age-years", "age-months", "submit", "error"):
        assert f'id="{element}"' in page


def test_openapi_describes_the_form_and_the_answer(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/predict"]["post"]
    form = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"file", "sex", "age_months", "force"}
    assert form["required"] == ["file"]  # sex: unless the DICOM has PatientSex
    answer = spec["components"]["schemas"]["PredictResponse"]["properties"]
    for key in ("bone_age_months", "bone_age", "sigma_months", "crop_box", "delta_months"):
        assert key in answer
    assert {"400", "413", "415", "422"} <= set(op["responses"])
    assert "/api/health" in spec["paths"]


def test_importing_boneage_does_not_import_fastapi():
    code = (
        "import sys, boneage, boneage.inference, boneage.inference.explain, boneage.predict; "
        "bad = [m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


_PREDICTOR = None


def app_predictor():
    """One Predictor shared by the apps built with other limits (loading takes seconds)."""
    global _PREDICTOR
    if _PREDICTOR is None:
        from boneage.inference import Predictor

        _PREDICTOR = Predictor()
    return _PREDICTOR


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "-inf", "lots"])
def test_serve_refuses_a_bad_upload_limit(value, capsys):
    """A usage error (exit 2 naming the option) before the model loads; ``inf`` and ``nan``
    used to end in an OverflowError (issue 31, item 11)."""
    from boneage.cli import main as boneage_main
    from boneage.serve import main

    for run in (main, lambda argv: boneage_main(["serve", *argv])):  # `boneage serve` too
        with pytest.raises(SystemExit) as e:
            run([f"--max-upload-mb={value}"])  # "=": argparse reads "-1" as an option
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "argument --max-upload-mb: must be a positive" in err and repr(value) in err


def test_package_data_ships_the_page():
    import boneage

    static = Path(boneage.__file__).parent / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "app.css", "docs.html"}


def test_a_refused_upload_is_a_422_naming_the_reason_unless_forced(client):
    grey = cv2.imencode(".png", np.full((300, 200), 90, np.uint8))[1].tobytes()
    r = post(client, grey)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "not_a_hand_radiograph"
    assert body["detail"].startswith("not a hand radiograph (the image is nearly uniform")
    forced = post(client, grey, force="true")
    assert forced.status_code == 200
    assert any("input gate refused" in n for n in forced.json()["notes"])
    bad = post(client, grey, force="maybe")
    assert bad.status_code == 422 and bad.json()["code"] == "bad_force"


def test_the_preview_draws_the_crop_box_only_for_a_crop():
    from boneage.serve import source_preview

    film = np.full((200, 100), 60, np.uint8)
    plain = source_preview(film, None)
    assert (plain[..., 0] == plain[..., 2]).all()  # grey: nothing drawn
    boxed = source_preview(film, (10, 20, 60, 120))
    assert (boxed[..., 0] != boxed[..., 2]).any()  # the orange box
