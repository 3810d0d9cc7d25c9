"""The playground's live microphone mode in a real headless Chromium: Chromium's fake capture device
plays a real recording (JFK, then silence) into getUserMedia; the page streams it to /v1/live on a
real gateway and shows the partial, final and reply text and plays the reply's audio chunks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cascade.audio import load_audio, write_wav
from services.common.testing import running_service

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a real-time turn through a browser: minutes on a loaded machine

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ENV = {"CASCADE_CHAT__MAX_SENTENCES": "1", "CASCADE_CHAT__MAX_REPLY_TOKENS": "24", "CASCADE_LIVE__SILENCE_MS": "1500"}


@pytest.fixture(scope="module")
def mic_file(jfk_path: Path, tmp_path_factory) -> Path:
    """JFK followed by 4 s of silence, as a 16 kHz WAV (what Chromium's fake capture device reads)."""
    samples = np.concatenate([load_audio(jfk_path), np.zeros(16000 * 4, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "jfk-then-silence.wav"
    write_wav(path, samples, 16000)
    return path


@pytest.fixture(scope="module")
def browser(mic_file: Path, tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("Debian chromium and chromium-driver are required (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--window-size=1200,1400",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={mic_file}%noloop", "--autoplay-policy=no-user-gesture-required",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-live')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_live_microphone_mode_streams_and_speaks_the_reply(browser, tmp_path_factory) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-live-page"), env=ENV) as gw:
        browser.get(gw.url + "/")
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        browser.find_element(By.ID, "live").click()
        body = browser.find_element(By.TAG_NAME, "body")
        WebDriverWait(browser, 240).until(
            lambda d: body.get_attribute("data-live-done") or d.find_element(By.ID, "error").is_displayed())
        assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
        assert "country" in browser.find_element(By.ID, "live-final").text.lower()
        assert browser.find_element(By.ID, "live-partial").text
        assert browser.find_element(By.ID, "live-reply").text
        assert int(body.get_attribute("data-live-audio") or 0) >= 1, "the reply's audio chunks were played"
        events = [r.find_element(By.TAG_NAME, "td").text for r in browser.find_elements(By.CSS_SELECTOR, "#live-timings tbody tr")]
        assert "first_audio" in events, events
        browser.find_element(By.ID, "live").click()  # stop: the socket closes, the page says nothing went wrong
        assert not browser.find_element(By.ID, "error").is_displayed()
