"""The web page in a real browser: headless Chromium driven by Selenium uploads a real
radiograph, waits for the estimate and checks it equals the API's answer; then what makes
the page trustworthy (issue 32, item 9): a change of file, sex or age clears the result at
once and an answer for older inputs is dropped, a refused image shows the gate's reason, the
interval, delta, SDS and its normal-band drawing, the limits statement, and a one-page print.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium
chromium-driver``) and selenium; skipped, with the reason, without them. The app runs under
uvicorn on a free port in a thread of this process, so the browser talks real HTTP to it.
A screenshot goes to the test's temporary folder (``BONEAGE_SCREENSHOT=path.png`` also writes
one there: that is how ``docs/webapp.png`` is made).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web app needs the serve extra: pip install '.[serve]'")
pytest.importorskip("uvicorn", reason="the web app needs uvicorn")
pytest.importorskip("selenium", reason="the browser test needs selenium (the dev extra)")

from shared_data import image_files, rsna_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="headless browser test needs chromium and chromedriver on PATH "
        "(apt-get install chromium chromium-driver)",
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from boneage.serve import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _api(base: str, path: Path, sex: str, age: str) -> dict:
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="sex"\r\n\r\n{sex}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="age_months"\r\n\r\n'
            f"{age}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: image/png\r\n\r\n'.encode(),
            path.read_bytes(),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    req = urllib.request.Request(
        f"{base}/api/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


MINUS = "\u2212"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _short(months: float) -> str:
    """``8 y 2 m``, as the page writes the ends of the interval."""
    total = max(0, round(months))
    return f"{total // 12} y {total % 12} m"


def _signed(x: float, digits: int = 1) -> str:
    text = f"{abs(x):.{digits}f}"
    return text if float(text) == 0 else ("+" if x > 0 else MINUS) + text


def _delta_words(delta: float) -> str:
    total = round(abs(delta))
    years, months = divmod(total, 12)
    if total == 0:
        return "Bone age matches the chronological age"
    parts = [_plural(years, "year")] * bool(years) + [_plural(months, "month")] * bool(months)
    side = "ahead of" if delta > 0 else "behind"
    return f"Bone age is {' '.join(parts)} {side} the chronological age"


def _films(n: int) -> list[Path]:
    rsna_dir("test299")
    films = image_files("test299")[:n]
    if len(films) < n:
        pytest.skip(f"needs {n} films in test299, found {len(films)}")
    return films


def _open(browser, server: str) -> None:
    """Loads the page and waits for the limits read from /api/health."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "limits-error").text.strip() != ""
    )
    browser.get_log("browser")  # drop what earlier tests left in the console log


def _estimate(browser, path: Path, sex: str, years: str = "", months: str = "") -> None:
    """Fills the form on the open page, submits it and waits for the result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, f"label[for=sex-{sex}]").click()
    for field, value in (("age-years", years), ("age-months", months)):
        box = browser.find_element(By.ID, field)
        box.clear()
        if value:
            box.send_keys(value)
    submit = browser.find_element(By.ID, "submit")
    WebDriverWait(browser, 10).until(lambda d: submit.is_enabled())
    submit.click()
    WebDriverWait(browser, 120).until(ec.visibility_of_element_located((By.ID, "result")))


# What is left of a result on the page: all empty once the inputs change.
_LEFT_OVER = """
const $ = (id) => document.getElementById(id);
return {
  hidden: $("result").hidden,
  text: ["result-age", "result-months", "result-interval", "result-delta", "sds-text",
         "interval-check", "orientation"].map((id) => $(id).textContent).join(""),
  pictures: ["img-source", "img-prepared", "img-heatmap"].filter((id) => $(id).src).length,
  notes: $("notes").children.length,
  drawing: $("sds-drawing").children.length,
  error: $("error").hidden ? "" : $("error").textContent,
};
"""
_NOTHING_LEFT = {"hidden": True, "text": "", "pictures": 0, "notes": 0, "drawing": 0, "error": ""}


def test_a_clinician_uploads_a_radiograph_and_sees_the_estimate(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    rsna_dir("fullres")
    path = image_files("fullres")[0]
    browser.get(server + "/")
    assert browser.find_element(By.ID, "submit").get_attribute("disabled") is not None
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "label[for=sex-F]").click()
    browser.find_element(By.ID, "age-years").send_keys("10")
    browser.find_element(By.ID, "age-months").send_keys("6")
    submit = browser.find_element(By.ID, "submit")
    WebDriverWait(browser, 10).until(lambda d: submit.is_enabled())
    submit.click()
    wait = WebDriverWait(browser, 120)
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    shown = browser.find_element(By.ID, "result-months")
    months = float(shown.get_attribute("data-months"))

    api = _api(server, path, "F", "126")
    assert months == api["bone_age_months"]  # the page shows the API's number, unrounded
    assert f"{api['bone_age_months']:.1f} months" in shown.text
    years, rest = api["bone_age"]["years"], api["bone_age"]["months"]
    assert browser.find_element(By.ID, "result-age").text == (
        f"{_plural(years, 'year')} {_plural(rest, 'month')}"
    )
    delta = float(browser.find_element(By.ID, "result-delta").get_attribute("data-delta"))
    assert delta == pytest.approx(api["bone_age_months"] - 126)
    # The three pictures decoded and drew; no script error; nothing fetched from elsewhere.
    for img in ("img-source", "img-prepared", "img-heatmap"):
        width = browser.execute_script(f"return document.getElementById('{img}').naturalWidth")
        assert width > 0, img
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {server}
    assert browser.find_element(By.ID, "error").is_displayed() is False

    shot = tmp_path / "webapp.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("BONEAGE_SCREENSHOT"):
        browser.save_screenshot(os.environ["BONEAGE_SCREENSHOT"])


def test_a_bad_file_shows_the_servers_reason(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.CSS_SELECTOR, "label[for=sex-M]").click()
    browser.find_element(By.ID, "submit").click()
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 60).until(lambda d: error.is_displayed())
    assert "not a usable radiograph" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_the_api_page_renders_offline(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/docs")
    WebDriverWait(browser, 30).until(
        lambda d: "POST /api/predict" in d.find_element(By.ID, "api-docs").text
    )
    text = browser.find_element(By.ID, "api-docs").text
    assert "age_months" in text and "bone_age_months" in text and "GET /api/health" in text


def test_a_change_of_file_sex_or_age_clears_the_result_at_once(server, browser):
    """The wrong-patient guard: nothing of an earlier film stays once the inputs change, and
    an answer still on its way when they change is dropped."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    first, second = _films(2)
    _open(browser, server)
    _estimate(browser, first, "F", "10", "6")
    assert browser.execute_script(_LEFT_OVER)["text"] != ""
    browser.find_element(By.ID, "file").send_keys(str(second))  # another film
    assert browser.execute_script(_LEFT_OVER) == _NOTHING_LEFT

    _estimate(browser, second, "F", "10", "6")
    browser.find_element(By.CSS_SELECTOR, "label[for=sex-M]").click()  # the sex
    assert browser.execute_script(_LEFT_OVER) == _NOTHING_LEFT

    _estimate(browser, second, "M", "10", "6")
    browser.find_element(By.ID, "age-months").send_keys("1")  # the age: 6 -> 61 months
    assert browser.execute_script(_LEFT_OVER) == _NOTHING_LEFT

    # Hold the next answer back 1.5 s, change the sex meanwhile: the answer is not drawn.
    browser.execute_script(
        """window.__answers = 0;
        const send = window.fetch;
        window.fetch = (...args) => send(...args).then((r) => new Promise((done) =>
          setTimeout(() => { window.__answers += 1; done(r); }, 1500)));"""
    )
    browser.find_element(By.ID, "age-months").clear()
    browser.find_element(By.ID, "age-months").send_keys("6")
    browser.find_element(By.ID, "submit").click()
    browser.find_element(By.CSS_SELECTOR, "label[for=sex-F]").click()
    WebDriverWait(browser, 120).until(lambda d: d.execute_script("return window.__answers") == 1)
    time.sleep(1.0)  # time to read and draw the answer, were it drawn
    assert browser.execute_script(_LEFT_OVER) == _NOTHING_LEFT
    assert browser.find_element(By.ID, "submit").is_enabled()  # ready for the new inputs
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_refused_image_shows_the_gates_reason(server, browser, tmp_path):
    """A uniform grey picture is no radiograph: the page shows the server's reason, offers
    to estimate it anyway, and the forced estimate carries its warning."""
    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    grey = tmp_path / "grey.png"
    assert cv2.imwrite(str(grey), np.full((400, 320), 128, np.uint8))
    _open(browser, server)
    browser.find_element(By.ID, "file").send_keys(str(grey))
    browser.find_element(By.CSS_SELECTOR, "label[for=sex-M]").click()
    browser.find_element(By.ID, "submit").click()
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 60).until(lambda d: error.is_displayed())
    assert "not a hand radiograph" in error.text and "uniform" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
    force = browser.find_element(By.ID, "force-box")
    assert force.is_displayed()

    force.click()
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 120).until(ec.visibility_of_element_located((By.ID, "result")))
    notes = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#notes li")]
    assert any("refused" in n for n in notes), notes
    assert not error.is_displayed()
    # The warnings stand out: a coloured box, not body text.
    first = browser.find_element(By.CSS_SELECTOR, "#notes li")
    assert first.value_of_css_property("border-left-width") != "0px"
    browser.find_element(By.CSS_SELECTOR, "label[for=sex-F]").click()
    assert not force.is_displayed()
    assert browser.find_element(By.ID, "force").is_selected() is False


def test_with_an_age_the_interval_sds_and_normal_band_are_shown(server, browser):
    from selenium.webdriver.common.by import By

    (film,) = _films(1)
    api = _api(server, film, "F", "126")
    _open(browser, server)
    _estimate(browser, film, "F", "10", "6")
    find = browser.find_element

    interval = find(By.ID, "result-interval").text
    if api["interval_90_months"] is None:
        assert interval == "90 % interval: not available for this model"
    else:
        lo, hi = api["interval_90_months"]
        assert interval == f"90 % interval: {_short(lo)} \u2013 {_short(hi)}"
    assert find(By.ID, "result-delta-words").text == _delta_words(api["delta_months"])
    assert find(By.ID, "sds-text").text.startswith(f"SDS {_signed(api['sds'])} ")
    assert float(find(By.ID, "sds-text").get_attribute("data-sds")) == api["sds"]
    normal = "Within" if api["within_normal_range"] else "Outside"
    assert find(By.ID, "sds-range").text.startswith(f"{normal} the normal range")
    check = find(By.ID, "interval-check").text
    if api["age_within_interval"]:
        assert "within the model's own error" in check and "may not be real" in check
    elif api["age_within_interval"] is False:
        assert "outside the model's 90 % interval" in check
    else:
        assert "no 90 % interval" in check
    assert api["reference"] in find(By.ID, "result-reference").text

    # The drawing: a scale from -3 to +3, the band -2..+2 shaded, the marker at the SDS.
    band = find(By.ID, "sds-band")
    assert band.is_displayed() and band.size["width"] > 50
    ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#sds-scale .sds-tick-label")]
    assert ticks == [f"{MINUS}3", f"{MINUS}2", f"{MINUS}1", "0", "+1", "+2", "+3"]
    geometry = browser.execute_script(
        """const b = document.getElementById("sds-band");
        const m = document.getElementById("sds-marker");
        return [Number(b.getAttribute("x")), Number(b.getAttribute("width")),
                Number(m.getAttribute("x1"))];"""
    )
    x, width, marker = geometry
    per_sd = width / 4  # the band spans 4 SD
    at = max(-3.0, min(3.0, api["sds"]))
    assert marker == pytest.approx(x + (at + 2) * per_sd, abs=0.5)
    fill = band.value_of_css_property("fill")
    assert fill not in ("none", "rgb(0, 0, 0)", "rgba(0, 0, 0, 0)")


def test_the_delta_is_worded_in_years_and_months(server, browser):
    """An age equal to the bone age 'matches'; 14 months below it is '1 year 2 months ahead'."""
    from selenium.webdriver.common.by import By

    (film,) = _films(1)
    bone = round(_api(server, film, "M", "120")["bone_age_months"])
    _open(browser, server)
    for age, words in (
        (bone, "Bone age matches the chronological age"),
        (bone - 14, "Bone age is 1 year 2 months ahead of the chronological age"),
        (bone + 1, "Bone age is 1 month behind the chronological age"),
    ):
        _estimate(browser, film, "M", str(age // 12), str(age % 12))
        assert browser.find_element(By.ID, "result-delta-words").text == words


def test_the_limits_statement_is_always_there(server, browser):
    from selenium.webdriver.common.by import By

    with urllib.request.urlopen(server + "/api/health", timeout=30) as r:
        model = json.loads(r.read())["model"]
    _open(browser, server)
    limits = browser.find_element(By.ID, "limits")
    assert limits.is_displayed()  # before any estimate too
    text = limits.text
    assert "Research software, not a medical device." in text
    assert "RSNA Pediatric Bone Age Challenge" in text and model["trained_on"] in text
    assert model["reference_citation"] in text
    validation = model["validation"]
    if validation is None:
        assert "records no error measured on validation films" in text
    else:
        assert f"Typical error: {validation['mae']:.1f} months" in text
        for band, b in validation["by_age_band"].items():
            if b.get("n"):
                assert f"{band}: " in text
                assert f"{abs(b['bias']):.1f} months on average" in text or "no average" in text


def test_the_print_view_is_one_a4_page(server, browser):
    """Printed, the page keeps the estimate, the drawing, the warnings and the limits, drops
    the form and the buttons, and fits one A4 page."""
    import base64
    import re

    from selenium.webdriver.common.by import By

    (film,) = _films(1)
    _open(browser, server)
    _estimate(browser, film, "F", "10", "6")
    assert browser.find_element(By.ID, "print").is_displayed()
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        shown = {
            i: browser.find_element(By.ID, i).is_displayed()
            for i in ("form", "print", "result-age", "sds-scale", "limits", "img-source",
                      "img-heatmap", "img-prepared")
        }  # fmt: skip
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert shown == {
        "form": False, "print": False, "result-age": True, "sds-scale": True, "limits": True,
        "img-source": True, "img-heatmap": True, "img-prepared": False,
    }  # fmt: skip
    pdf = base64.b64decode(
        browser.execute_cdp_cmd(
            "Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True}
        )["data"]
    )
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1
