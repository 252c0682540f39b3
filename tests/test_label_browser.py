"""The labeling page in a real browser: headless Chromium labels a batch with the keyboard and the
mouse, and labels.csv holds the answers (issue 11 item 4). Skipped, with the install command, where
Chromium, its driver or Selenium is missing (CI has only Python and pip)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from autoal import label, oracle
from test_label_page import CLASSES, saved_labels, write_batch

INSTALL = "apt-get install -y chromium chromium-driver && pip install -e '.[browser]'"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None

pytestmark = pytest.mark.skipif(webdriver is None or CHROMIUM is None or CHROMEDRIVER is None,
                                reason=f"needs Chromium, chromedriver and Selenium: {INSTALL}")


def chromium(width: int = 1400, height: int = 900) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture
def page(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, label.LabelServer, Path]]:
    run = tmp_path / "run"
    write_batch(run, n=5, classes=getattr(request, "param", CLASSES))
    server = label.open_server(run, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    driver = chromium()
    try:
        yield driver, server, run
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text(driver: Any, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def test_a_person_labels_a_batch_in_chromium(page: tuple[Any, label.LabelServer, Path]) -> None:
    driver, server, run = page
    driver.get(server.url)
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#class-buttons button")) == 3, "the class buttons")
    assert text(driver, "position") == "Image 1 of 5"
    assert "benign" in text(driver, "prediction") and "50% sure" in text(driver, "prediction")
    bars = driver.find_elements(By.CSS_SELECTOR, "#contributions .contribution")
    assert [b.find_element(By.CLASS_NAME, "strategy").text for b in bars] == ["margin", "kmeans"]

    # The 28-pixel image is shown large, every pixel a sharp square.
    image = driver.find_element(By.ID, "image")
    wait_for(lambda: image.size["width"] >= 10 * 28, "the image scaled up")
    assert image.size["width"] % 28 == 0
    assert driver.execute_script("return getComputedStyle(arguments[0]).imageRendering", image) == "pixelated"

    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("1")  # image 1: benign; the page moves on to the next unanswered image
    body.send_keys("2")  # image 2: malignant
    body.send_keys("u")  # image 3: unsure
    body.send_keys("3")  # image 4: normal ...
    wait_for(lambda: saved_labels(run)["images/0003.png"] == "normal", "the fourth answer in labels.csv")
    body.send_keys("z")  # ... taken back
    wait_for(lambda: saved_labels(run)["images/0003.png"] == "", "the undo in labels.csv")
    assert text(driver, "position") == "Image 4 of 5"  # undo returns to the image it changed
    driver.find_element(By.CSS_SELECTOR, "#class-buttons button[data-label='benign']").click()
    body.send_keys("2")  # image 5
    expected = {"images/0000.png": "benign", "images/0001.png": "malignant", "images/0002.png": "unsure",
                "images/0003.png": "benign", "images/0004.png": "malignant"}
    wait_for(lambda: saved_labels(run) == expected, "all five answers in labels.csv")
    wait_for(lambda: driver.find_element(By.ID, "complete").is_displayed(), "the batch-complete banner")
    assert "--resume" in text(driver, "complete")

    # Closing the tab loses nothing: a new page shows what is saved, and can correct it.
    driver.get(server.url)
    wait_for(lambda: text(driver, "done") == "5", "the saved progress after a reload")
    assert "1 unsure" in text(driver, "unsure-count")
    driver.find_elements(By.CSS_SELECTOR, "#strip .thumb")[2].click()
    assert "unsure" in text(driver, "current-label")
    driver.find_element(By.TAG_NAME, "body").send_keys("3")
    wait_for(lambda: saved_labels(run)["images/0002.png"] == "normal", "the corrected answer")
    assert saved_labels(run) == {**expected, "images/0002.png": "normal"}
    assert CLASSES == ["benign", "malignant", "normal"]  # the keys above assume this order

    # The server stopped: the page says the answer was not saved, and how to start it again.
    first = driver.find_elements(By.CSS_SELECTOR, "#strip .thumb")[0]
    first.click()
    server.shutdown()
    server.server_close()
    driver.find_element(By.TAG_NAME, "body").send_keys("3")  # benign -> normal, which cannot be saved
    wait_for(lambda: driver.find_element(By.ID, "error").is_displayed(), "the not-saved banner")
    assert "does not answer" in text(driver, "error") and text(driver, "saved") == "Not saved"
    assert first.find_element(By.CLASS_NAME, "thumb-label").text == "benign"  # the screen shows what is saved
    assert saved_labels(run) == {**expected, "images/0002.png": "normal"}


@pytest.mark.parametrize("page", [[str(d) for d in range(10)]], indirect=True)
def test_classes_named_by_one_character_are_typed_as_themselves(page: tuple[Any, label.LabelServer, Path]) -> None:
    """With digit classes, the key 1 is the class 1 (not the first button, class 0)."""
    driver, server, run = page
    driver.get(server.url)
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#class-buttons button")) == 10, "the class buttons")
    body = driver.find_element(By.TAG_NAME, "body")
    for key in "1097":
        body.send_keys(key)
    wait_for(lambda: list(saved_labels(run).values())[:4] == ["1", "0", "9", "7"], "the typed digits in labels.csv")


def test_a_large_image_is_fitted_and_a_click_shows_it_at_full_size(tmp_path: Path) -> None:
    run = tmp_path / "run"
    images = np.random.default_rng(0).integers(0, 256, (2, 700, 900), dtype=np.uint8)
    oracle.write_query_batch(run, round=1, classes=CLASSES, images_uint8=images, pool_indices=[0, 1],
                             predictions=None, contributions=None)
    server = label.open_server(run, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    driver = chromium(1200, 800)
    try:
        driver.get(server.url)
        image = wait_for(lambda: driver.find_elements(By.ID, "image"), "the image")[0]
        wait_for(lambda: 0 < image.size["width"] < 900, "the image fitted to its box")
        assert driver.execute_script("return getComputedStyle(arguments[0]).imageRendering", image) == "auto"
        assert "click for full size" in text(driver, "pixels") and "no model" in text(driver, "prediction")
        assert "start the labeled set" in text(driver, "contributions")
        image.click()
        wait_for(lambda: image.size["width"] == 900 and "full size" in text(driver, "pixels"), "the full size")
        driver.find_element(By.ID, "next").click()  # the next image starts fitted again
        wait_for(lambda: 0 < image.size["width"] < 900 and text(driver, "position") == "Image 2 of 2",
                 "the next image fitted")
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
