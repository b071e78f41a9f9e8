"""The web page in a real browser: headless Chromium driven by Selenium uploads a real
radiograph, waits for the estimate and checks it equals the API's answer.

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
    assert browser.find_element(By.ID, "result-age").text.startswith(f"{years} years {rest} month")
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
