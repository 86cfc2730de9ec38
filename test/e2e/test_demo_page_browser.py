"""The demo page in a real browser: Debian's Chromium, headless, driven through Selenium.

Against live gateways (the embedded one the session shares, serving an untrained
random model, and one with API keys on), the page must show what POST /predict
answers for the same file, the gateway's own words when it refuses one, ask for
a key on a 401, and run under its Content-Security-Policy without a violation.

Nothing is downloaded: the browser and its driver are the Debian packages'
binaries, named explicitly, and Selenium Manager (which would fetch a driver) is
pointed at a file that does not exist, so calling it would fail the test. The
screenshot lands in test-artifacts/; UPDATE_README_SCREENSHOT=1 also refreshes
the README's (docs/images/demo-page.png).
"""

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from processes import ROOT, Process, answers, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_PACKAGES = "chromium chromium-driver"
ARTIFACTS = ROOT / "test-artifacts"
README_SCREENSHOT = ROOT / "docs" / "images" / "demo-page.png"
CAT_JPEG = ROOT / "test" / "cat.jpg"
KEY = "key-browser-8d0c2e57"
KEY_STORAGE = "ml-inference-pipeline.api-key"
ANSWER_WAIT_S = 30.0
# Runs before any script of every page the browser opens (CDP injects it, so the
# page's own policy does not apply to it): it records each CSP violation.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def missing_binaries_message() -> str | None:
    """Why the browser cannot start, naming the Debian packages; None when it can."""
    missing = [str(binary) for binary in (CHROMIUM, CHROMEDRIVER) if not binary.is_file()]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not found: install Debian's packages "
        f"(apt-get install {APT_PACKAGES}); the browser test downloads nothing."
    )


def test_chromium_and_its_driver_are_installed() -> None:
    """A machine without them fails here, by name, rather than skipping the page's checks."""
    message = missing_binaries_message()
    if message:
        pytest.fail(message)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, logs: Path) -> Iterator[WebDriver]:
    """Headless Chromium in an 1100x900 window, its console kept, no Selenium Manager."""
    if message := missing_binaries_message():
        pytest.fail(message)
    options = Options()
    options.binary_location = str(CHROMIUM)
    # No sandbox: CI containers run as root, where Chromium refuses to start with one.
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1100,900"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(logs / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as env:
        # Selenium Manager, run only when no driver path is given, would download one:
        # pointed at a missing file, it would fail the start instead.
        env.setenv("SE_MANAGER_PATH", str(tmp_path_factory.mktemp("no-manager") / "absent"))
        driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS}
        )
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def keyed_gateway(embedded_gateway: Process, logs: Path) -> Iterator[Process]:
    """The session's embedded gateway, a second time on a port of its own, with API keys on."""
    port = free_port()
    keyed = replace(
        embedded_gateway,
        env={**embedded_gateway.env, "PORT": str(port), "API_KEYS": KEY},
        log_path=logs / "gateway-demo-page-keys.log",
        url=f"http://127.0.0.1:{port}",
    )
    keyed.ready = answers(f"{keyed.url}/health", 200)
    yield keyed.start()
    keyed.stop()


def open_page(driver: WebDriver, url: str) -> None:
    """Open the gateway's root as a user would: the browser's Accept lands it on /ui."""
    driver.get(f"{url}/")
    assert driver.current_url == f"{url}/ui"
    driver.get_log("browser")  # start each test with an empty console


def upload(driver: WebDriver, path: Path) -> WebElement:
    """Pick `path` in the page's file input; the card once its answer is shown."""
    before = len(driver.find_elements(By.CSS_SELECTOR, "li.card"))
    driver.find_element(By.ID, "photos").send_keys(str(path))
    return finished_card(driver, before)


def finished_card(driver: WebDriver, index: int) -> WebElement:
    """The page's `index`th card once it shows an answer or a failure (the page sets data-state)."""

    def finished(d: WebDriver) -> WebElement | bool:
        cards = d.find_elements(By.CSS_SELECTOR, "li.card")
        if len(cards) <= index:
            return False
        state = cards[index].get_attribute("data-state")
        return cards[index] if state in ("done", "failed") else False

    card: WebElement = WebDriverWait(driver, ANSWER_WAIT_S).until(finished)
    return card


def text_of(card: WebElement, selector: str) -> str:
    return card.find_element(By.CSS_SELECTOR, selector).text


def predict(url: str, path: Path, **headers: str) -> httpx.Response:
    """The request the page sends for `path`, sent by the test."""
    with path.open("rb") as file:
        return httpx.post(
            f"{url}/predict",
            params={"top_k": 5},
            files={"file": (path.name, file)},
            headers=headers,
            timeout=60.0,
        )


def assert_no_csp_violation(driver: WebDriver) -> None:
    violations: list[str] = driver.execute_script("return window.cspViolations;")
    assert violations == []
    console = [entry["message"] for entry in driver.get_log("browser")]
    assert not [line for line in console if "Content Security Policy" in line], console


def save_screenshot(driver: WebDriver) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo-page.png"
    assert driver.save_screenshot(str(shot))
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)


def test_a_photo_shows_the_top5_the_api_gives_for_it(
    browser: WebDriver, embedded_gateway: Process
) -> None:
    open_page(browser, embedded_gateway.url)
    card = upload(browser, CAT_JPEG)
    expected: dict[str, Any] = predict(embedded_gateway.url, CAT_JPEG).json()
    assert card.get_attribute("data-state") == "done", card.text
    rows = card.find_elements(By.CSS_SELECTOR, "li.prediction")
    shown = [
        (
            text_of(row, ".label"),
            int(str(row.get_attribute("data-class-id"))),
            text_of(row, ".percent"),
        )
        for row in rows
    ]
    assert shown == [
        (p["label"], p["class_id"], f"{p['confidence_percent']:.2f}%")
        for p in expected["predictions"]
    ]
    assert len(shown) == 5
    model = expected["model"]
    assert model["weights"] == "untrained"
    assert text_of(card, ".fact-model") == model["name"]
    assert text_of(card, ".fact-version") == model["version"]
    assert text_of(card, ".fact-backend") == model["backend"]
    banner = card.find_element(By.CSS_SELECTOR, ".untrained")
    assert banner.is_displayed()
    assert banner.value_of_css_property("background-color") == "rgba(179, 38, 30, 1)"
    assert expected["warning"] in banner.text
    assert text_of(card, ".stage-total").endswith(" ms")
    if "stages_ms" in expected:
        for stage in ("upload", "decode", "queue", "model", "ranking"):
            assert text_of(card, f".stage-{stage}").endswith(" ms")
    assert card.find_element(By.CSS_SELECTOR, "img.preview").get_attribute("naturalWidth") != "0"
    save_screenshot(browser)
    assert_no_csp_violation(browser)


def test_a_file_that_is_not_an_image_shows_the_gateways_own_detail(
    browser: WebDriver, embedded_gateway: Process, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a photograph\n")
    open_page(browser, embedded_gateway.url)
    card = upload(browser, notes)
    problem = predict(embedded_gateway.url, notes).json()
    assert card.get_attribute("data-state") == "failed"
    assert text_of(card, ".problem-detail") == problem["detail"]
    assert text_of(card, ".problem-title") == f"{problem['status']} {problem['title']}"
    assert card.find_elements(By.CSS_SELECTOR, ".key-hint") == []
    assert_no_csp_violation(browser)


def test_with_api_keys_the_page_asks_for_one_then_predicts_with_it(
    browser: WebDriver, keyed_gateway: Process
) -> None:
    open_page(browser, keyed_gateway.url)
    card = upload(browser, CAT_JPEG)
    assert card.get_attribute("data-state") == "failed"
    assert text_of(card, ".problem-title").startswith("401 ")
    assert "enter it in the API key field" in text_of(card, ".key-hint")
    assert predict(keyed_gateway.url, CAT_JPEG).status_code == 401

    browser.find_element(By.ID, "api-key").send_keys(KEY)
    card.find_element(By.CSS_SELECTOR, "button.retry").click()
    card = finished_card(browser, 0)
    expected = predict(keyed_gateway.url, CAT_JPEG, **{"X-API-Key": KEY}).json()
    assert card.get_attribute("data-state") == "done", card.text
    labels = [row.text for row in card.find_elements(By.CSS_SELECTOR, ".prediction .label")]
    assert labels == [p["label"] for p in expected["predictions"]]
    # The key is kept for this tab only: sessionStorage, never localStorage or a cookie.
    stored = browser.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}');")
    assert stored == KEY
    assert browser.execute_script("return localStorage.length;") == 0
    assert browser.get_cookies() == []
    assert_no_csp_violation(browser)

    # With the gateway gone, the page says the network failed (the fixture's stop is a no-op).
    keyed_gateway.stop()
    gone = upload(browser, CAT_JPEG)
    assert gone.get_attribute("data-state") == "failed"
    assert text_of(gone, ".problem-title") == "Network error"
    assert "could not be reached" in text_of(gone, ".problem-detail")


def test_the_browser_enforces_the_page_policy(
    browser: WebDriver, embedded_gateway: Process
) -> None:
    """The check above can fail: an inline script injected into the page is refused, and seen."""
    open_page(browser, embedded_gateway.url)
    browser.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'window.inlineRan = true;';"
        "document.body.append(s);"
    )
    WebDriverWait(browser, 5).until(
        lambda d: d.execute_script("return window.cspViolations.length")
    )
    assert browser.execute_script("return window.inlineRan === undefined;")
    assert browser.execute_script("return window.cspViolations;") == ["script-src-elem inline"]
