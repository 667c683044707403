"""End to end: the web page in headless Chromium against a real uvicorn server on 127.0.0.1.

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium;
skips with the reason when they are absent. selenium is pointed at /usr/bin/chromedriver and the chromium
binary, so selenium-manager never downloads a driver.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from .conftest import SR, live_server, voice_like

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")


def _find(*names: str) -> str | None:
    for n in names:
        p = shutil.which(n) or (n if Path(n).is_file() else None)
        if p:
            return p
    return None


CHROMIUM = _find("chromium", "chromium-browser", "/usr/bin/chromium")
CHROMEDRIVER = _find("/usr/bin/chromedriver", "chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """A uvicorn server in a background thread on a free 127.0.0.1 port; yields its base URL."""
    from emovae.runtime import Recognizer
    from emovae.serve import ServeConfig, create_app

    app = create_app(Recognizer.load(tiny_model_dir), ServeConfig())
    with live_server(app) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                # a synthetic microphone (a beeping tone) that needs no permission prompt
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, to see CSP violations
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    except Exception as exc:  # a broken install is a failure, not a skip: CI installs both
        pytest.fail(f"could not start headless chromium with {CHROMEDRIVER}: {exc}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout: float = 30.0, what: str = "condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond, message=f"timed out waiting for {what}")


def _ready_page(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _wait(browser, lambda d: d.find_element(By.ID, "file").is_enabled(), what="the model to load")
    return browser.find_element(By.ID, "file")


def test_upload_a_clip_shows_its_emotion(browser, server, tiny_model_dir, tmp_path):
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from emovae.modelfile import read_model_json

    classes = read_model_json(tiny_model_dir)["classes"]
    clip = tmp_path / "clip.wav"
    sf.write(clip, voice_like(180, 1.5), SR)

    _ready_page(browser, server).send_keys(str(clip))
    emotion = _wait(browser, lambda d: (d.find_element(By.ID, "emotion").get_attribute("textContent").strip()
                                        in classes) and d.find_element(By.ID, "emotion"), what="#emotion")
    assert emotion.get_attribute("textContent").strip() in classes
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .bar-row")) == len(classes)
    assert browser.find_elements(By.CSS_SELECTOR, "#map #clip-marker circle")  # the clip on the latent map
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map g circle")) > len(classes)  # the training clips
    assert "error" not in (browser.find_element(By.ID, "status").get_attribute("class") or "")


def test_the_page_runs_under_its_content_security_policy(browser, server):
    """The page is served with a CSP that allows no inline script or style; it still loads the model (its
    script ran) and styles itself (its stylesheet applied), and the console shows no violation."""
    import urllib.request

    from selenium.webdriver.common.by import By

    with urllib.request.urlopen(server + "/") as r:
        csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    browser.get_log("browser")  # drop what earlier tests left
    _ready_page(browser, server)
    assert browser.find_element(By.ID, "map-desc").value_of_css_property("font-size") != \
        browser.find_element(By.TAG_NAME, "body").value_of_css_property("font-size")  # app.css applied
    logs = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in logs if "Content Security Policy" in m or "Refused to" in m
                or "Failed to load resource" in m], logs  # a violation, a blocked file, a 404 (the favicon)


def test_a_text_file_shows_a_clear_error(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "notes.txt"
    bad.write_text("not audio at all\n" * 10)
    _ready_page(browser, server).send_keys(str(bad))
    status = _wait(browser, lambda d: "error" in (d.find_element(By.ID, "status").get_attribute("class") or "")
                   and d.find_element(By.ID, "status"), what="an error message")
    assert "notes.txt" in status.text


def test_record_from_the_microphone(browser, server, tiny_model_dir):
    """MediaRecorder -> decodeAudioData -> 16-bit WAV encoded in the page -> /v1/predict."""
    from selenium.webdriver.common.by import By

    from emovae.modelfile import read_model_json

    answers = [*read_model_json(tiny_model_dir)["classes"], "uncertain", "not speech"]  # a beep is not speech
    _ready_page(browser, server)
    button = browser.find_element(By.ID, "record")
    button.click()
    _wait(browser, lambda d: d.find_element(By.ID, "record").get_attribute("aria-pressed") == "true",
          what="recording to start")
    time.sleep(2.0)
    button.click()
    _wait(browser, lambda d: d.find_element(By.ID, "emotion").get_attribute("textContent").strip() in answers
          or "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""), what="a result")
    status = browser.find_element(By.ID, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text
    assert browser.find_element(By.ID, "emotion").get_attribute("textContent").strip() in answers


def test_adapt_to_my_voice(browser, server, tmp_path):
    """With 'adapt to my voice' ticked, the page sends a session id: the second clip is adapted."""
    import soundfile as sf
    from selenium.webdriver.common.by import By

    clips = []
    for i in range(2):
        clips.append(tmp_path / f"clip{i}.wav")
        sf.write(clips[-1], voice_like(150 + 30 * i, 1.5, seed=i), SR)
    file_input = _ready_page(browser, server)
    browser.find_element(By.ID, "adapt").click()
    assert browser.find_element(By.ID, "reset").is_displayed()
    file_input.send_keys(str(clips[0]))
    _wait(browser, lambda d: "not adapted yet" in d.find_element(By.ID, "details").text, what="the first clip")
    browser.find_element(By.ID, "file").send_keys(str(clips[1]))
    _wait(browser, lambda d: "adapted to your voice (2 clips)" in d.find_element(By.ID, "details").text,
          what="the second clip, adapted")
    browser.find_element(By.ID, "file").send_keys(str(clips[1]))  # the same clip again counts once
    _wait(browser, lambda d: "already counted" in d.find_element(By.ID, "details").text, what="the repeat")
    assert "adapted to your voice (2 clips)" in browser.find_element(By.ID, "details").text


def _affect_of_dot(browser) -> tuple[float, float]:
    """(valence, arousal) where the page drew its dot, read from the screen: the dot's centre against the
    circumplex's ring (radius 1) and axes, so the test knows nothing of the page's coordinates."""
    from selenium.webdriver.common.by import By

    def centre(css):
        r = browser.find_element(By.CSS_SELECTOR, css).rect
        return r["x"] + r["width"] / 2, r["y"] + r["height"] / 2, r["width"] / 2

    x, y, _ = centre("#circumplex #affect-dot")
    cx, cy, radius = centre("#circumplex #affect-ring")
    axis_x, _, _ = centre("#circumplex #affect-axis-y")  # the vertical axis: valence 0
    _, axis_y, _ = centre("#circumplex #affect-axis-x")  # the horizontal axis: arousal 0
    assert (axis_x, axis_y) == pytest.approx((cx, cy), abs=1.0)
    return (x - cx) / radius, (cy - y) / radius  # screen y runs down, arousal up


def test_a_clip_is_placed_on_the_circumplex_by_its_arousal_and_valence(browser, server, tiny_model_dir, tmp_path):
    """The tiny model has arousal and valence heads: the dot sits where the service's answer for the clip says."""
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from emovae.runtime import Recognizer

    clip = tmp_path / "clip.wav"
    sf.write(clip, voice_like(170, 1.5, seed=3), SR)
    want = Recognizer.load(tiny_model_dir).predict_file(clip)  # one inference path: the service's numbers
    assert want.arousal is not None
    _ready_page(browser, server).send_keys(str(clip))
    _wait(browser, lambda d: d.find_element(By.ID, "affect").is_displayed(), what="the circumplex")
    assert _affect_of_dot(browser) == pytest.approx((want.valence, want.arousal), abs=0.05)
    labels = [t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "#circumplex text")]
    assert {"unpleasant", "pleasant", "calm", "activated"} <= set(labels)
    assert f"{want.arousal:+.2f}" in browser.find_element(By.ID, "affect-values").text


def test_the_dot_follows_known_answers_and_hides_without_them(browser, server, tmp_path):
    """Answers given to the page (its fetch of /v1/predict replaced): unpleasant and activated lands up and left,
    pleasant and calm down and right; an answer without arousal (a model without the heads, or not speech)
    hides the figure."""
    import json

    import soundfile as sf
    from selenium.webdriver.common.by import By

    clip = tmp_path / "clip.wav"
    sf.write(clip, voice_like(170, 1.5), SR)
    file_input = _ready_page(browser, server)
    classes = browser.execute_script("return MODEL.classes")
    base = {"emotion": classes[0], "answer": classes[0], "confidence": 0.7, "duration_s": 1.5,
            "probabilities": {c: (0.7 if i == 0 else 0.3 / (len(classes) - 1)) for i, c in enumerate(classes)}}
    known = [({"arousal": 0.6, "valence": -0.5}, "up-left"), ({"arousal": -0.7, "valence": 0.4}, "down-right"),
             ({}, None)]
    for answer, side in known:
        body = json.dumps({**base, **answer})
        browser.execute_script(  # the next upload gets this answer
            "const body = arguments[0]; window.fetch = async () => new Response(body, {status: 200, "
            "headers: {'content-type': 'application/json'}});", body)
        browser.execute_script("document.getElementById('status').textContent = ''")
        file_input.send_keys(str(clip))
        _wait(browser, lambda d: d.find_element(By.ID, "status").text.endswith("done."), what=f"the answer {body}")
        if side is None:
            assert not browser.find_element(By.ID, "affect").is_displayed()
            assert not browser.find_elements(By.ID, "affect-dot")
            continue
        assert browser.find_element(By.ID, "affect").is_displayed()
        valence, arousal = _affect_of_dot(browser)
        assert (valence < 0 and arousal > 0) if side == "up-left" else (valence > 0 and arousal < 0)
        assert (valence, arousal) == pytest.approx((answer["valence"], answer["arousal"]), abs=0.05)
