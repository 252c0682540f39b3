"""Screenshot of the labeling page (README): serve a run's pending batch, answer a few images through
the page in headless Chromium, save a PNG.

    python experiments/screenshots/label_page.py RUN --answers=-,-,1,5,7 --show 1 --out experiments/screenshots/label-page.png

The run folder is copied first, so its labels.csv is left as it was. Needs Debian's chromium and
chromium-driver and ``pip install -e '.[browser]'``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from autoal import label


def chromium(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                            options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--answers", default="", help="labels for the first images, comma-separated; - leaves one unanswered")
    parser.add_argument("--show", type=int, default=None, help="image to show at the end (1-based)")
    parser.add_argument("--out", type=Path, default=Path("experiments/screenshots/label-page.png"))
    parser.add_argument("--size", default="1400x900", help="window WIDTHxHEIGHT in CSS pixels")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / args.run.name
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("tb", ".lock"))
        server = label.open_server(run, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        driver = chromium(width, height)
        try:
            driver.get(server.url)
            time.sleep(1)
            for answer in filter(None, args.answers.split(",")):
                if answer == "-":  # leave this image unanswered
                    driver.find_element(By.ID, "next").click()
                    continue
                button = "unsure" if answer == "unsure" else f"#class-buttons button[data-label='{answer}']"
                driver.find_element(By.ID if answer == "unsure" else By.CSS_SELECTOR, button).click()
                time.sleep(0.3)
            if args.show is not None:
                driver.find_elements(By.CSS_SELECTOR, "#strip .thumb")[args.show - 1].click()
            driver.execute_script("document.activeElement && document.activeElement.blur()")
            ActionChains(driver).move_to_element(driver.find_element(By.ID, "title")).perform()  # no hover
            time.sleep(1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
