"""The web playground in a real headless Chromium against a real gateway on loopback,
and the HTML evaluation report opened in the same browser."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from services.common.testing import free_port, running_service

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("Debian chromium and chromium-driver are required (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1400", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw")) as svc:
        yield svc


@pytest.fixture(scope="module")
def gateway_without_llm(tmp_path_factory):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env = {"CASCADE_SERVICE__LLM_URL": dead, "CASCADE_SERVICE__REQUEST_TIMEOUT_S": "5"}
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-nollm"), env=env) as svc:
        yield svc


def _keep(shot: Path) -> None:
    """CASCADE_SCREENSHOTS=DIR keeps a copy of each screenshot (the README's pictures come from here)."""
    if os.environ.get("CASCADE_SCREENSHOTS"):
        Path(os.environ["CASCADE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["CASCADE_SCREENSHOTS"]) / shot.name)


def _run(browser, url: str, audio: Path, correct: str, shot: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.ID, "file").send_keys(str(audio))
    Select(browser.find_element(By.ID, "correct")).select_by_value(correct)
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 240).until(
        lambda d: d.find_element(By.ID, "result").is_displayed() or d.find_element(By.ID, "error").is_displayed())
    browser.save_screenshot(str(shot))
    _keep(shot)
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    return browser


def test_upload_shows_nbest_diff_guard_and_timings(browser, gateway, shared_data, tmp_path):
    from selenium.webdriver.common.by import By

    _run(browser, gateway.url, shared_data / "real" / "jfk.flac", "ger", tmp_path / "playground.png")
    rows = browser.find_elements(By.CSS_SELECTOR, ".segment .nbest tbody tr")
    assert len(rows) >= 2, "the N-best list is shown"
    texts = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    assert len(set(texts)) == len(texts), "hypotheses are distinct"
    assert "country" in browser.find_element(By.ID, "final-text").text.lower()
    diff = browser.find_element(By.CSS_SELECTOR, ".segment .diff")
    assert "country" in diff.text.lower(), "the corrected text is shown as a word diff"
    assert "method: ger" in browser.find_element(By.CSS_SELECTOR, ".segment .guard").text
    stages = [r.find_element(By.TAG_NAME, "td").text for r in browser.find_elements(By.CSS_SELECTOR, "#timings tbody tr")]
    assert "asr" in stages and sum(s.startswith("correct") for s in stages) == 1, stages
    assert (tmp_path / "playground.png").stat().st_size > 10_000


def test_page_without_llm_shows_1best_and_says_correction_unavailable(browser, gateway_without_llm, shared_data, tmp_path):
    from selenium.webdriver.common.by import By

    _run(browser, gateway_without_llm.url, shared_data / "real" / "jfk.flac", "ger", tmp_path / "nollm.png")
    notice = browser.find_element(By.ID, "notice")
    assert notice.is_displayed() and "unavailable" in notice.text
    assert "status: unavailable" in browser.find_element(By.CSS_SELECTOR, ".segment .guard").text
    assert "country" in browser.find_element(By.ID, "final-text").text.lower()


def test_html_in_hypotheses_renders_as_text(browser, gateway):
    from selenium.webdriver.common.by import By

    evil = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    hyp = lambda text, s: {"text": text, "am_score": s, "avg_logprob": s / 5, "tokens": None}  # noqa: E731
    segment = {"id": 0, "start": 0.0, "end": 2.0, "text": evil, "avg_logprob": -0.2, "no_speech_prob": 0.0, "words": None,
               "nbest": {"hypotheses": [hyp("hello world", -1.0), hyp(evil, -2.0)], "language": "en", "start": 0.0,
                         "end": 2.0, "id": None},
               "correction": {"text": evil, "method": "ger", "status": "ok", "chosen": None, "changed": True,
                              "scores": [], "fallback_reason": "<b>bold</b>", "guards": {"<i>": "<u>x</u>"},
                              "raw_output": None, "info": None}}
    transcript = {"text": evil, "segments": [segment], "language": "en", "task": "transcribe", "model": "tiny.en",
                  "duration": 2.0, "source": None, "stages": []}
    browser.get(gateway.url + "/")
    browser.execute_script("window.cascadeRender(JSON.parse(arguments[0]), 'transcribe')", json.dumps({"transcript": transcript}))
    assert browser.title != "pwned"
    assert not browser.find_elements(By.CSS_SELECTOR, "#result img, #result script, #result b, #result i, #result u")
    assert "<script>" in browser.find_element(By.ID, "final-text").text
    assert "<b>bold</b>" in browser.find_element(By.CSS_SELECTOR, ".segment .guard").text


def test_eval_report_opens_with_chart_and_tables(browser, shared_data, tmp_path):
    from selenium.webdriver.common.by import By

    from cascade import metrics, report
    from cascade.formats.hyporadise import load_hyporadise

    rows = [report.ReportRow(dataset="atis", id=u.id, reference=u.reference,
                             outputs={"1-best": u.nbest.texts[0], "o_nb": metrics.oracle_nbest_pick(u.reference, u.nbest)})
            for u in load_hyporadise(shared_data / "hyporadise" / "dev" / "atis.json", limit=30)]
    path = report.write(tmp_path / "report.html", rows, title="ATIS dev, first 30")
    browser.get(path.as_uri())
    browser.save_screenshot(str(tmp_path / "report.png"))
    _keep(tmp_path / "report.png")
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg"), "the WER chart is inline SVG"
    cells = browser.find_elements(By.CSS_SELECTOR, "table.wer tr")
    assert [c.text.split()[0] for c in cells[1:]] == ["atis", "all"]
    expected = 100 * metrics.wer([r.reference for r in rows], [r.outputs["1-best"] for r in rows])
    assert f"{expected:.2f}" in cells[1].text
    assert browser.find_elements(By.CSS_SELECTOR, "table.outcomes")
