"""The README's screenshots of the page (docs/images/app_*.jpg), made in headless Chromium.

Copies the bundled sample's 100 unlabelled cells into a temporary folder, starts the page
(`python -m cellssl_jax.app FOLDER`, colour histograms unless --features), sets the PBC classes,
labels 3 cells per class by their true class through the API, classifies, and photographs the
classes, label, classify, review and export screens. Needs chromium and chromedriver (Debian:
`apt-get install -y chromium chromium-driver`) and selenium (the test extra).

    python scripts/release/app_screenshots.py                 # -> docs/images/
    python scripts/release/app_screenshots.py --out /tmp/shots --features xcit+colorhist
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from cellssl_jax.demo import SAMPLE
from cellssl_jax.feature_kinds import KINDS

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"http://(127\.0\.0\.1:\d+)/\?token=(\S+)")
PER_CLASS = 3


def call(base: str, token: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"X-Token": token})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def wait_job(base: str, token: str, name: str, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = call(base, token, "/api/version")["jobs"][name]
        if job["state"] == "done":
            return
        if job["state"] == "failed":
            raise SystemExit(f"{name} failed: {job['error']}")
        time.sleep(0.3)
    raise SystemExit(f"{name} did not finish in {timeout} s")


def shoot(driver, path: Path) -> Path:
    """The browser window as a JPEG (photos of cells: a PNG would be 4x larger)."""
    with Image.open(io.BytesIO(driver.get_screenshot_as_png())) as image:
        image.convert("RGB").save(path, quality=85)
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images",
                        help="where the PNGs go (default docs/images)")
    parser.add_argument("--features", choices=KINDS, default="colorhist",
                        help="the page's --features (default colorhist: quick)")
    args = parser.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        raise SystemExit("needs chromium and chromedriver: apt-get install -y chromium "
                         "chromium-driver")
    work = Path(tempfile.mkdtemp(prefix="cellssl_shots_"))
    folder = work / "my_cells"
    shutil.copytree(SAMPLE / "unlabelled", folder)
    with open(SAMPLE / "unlabelled_truth.csv", newline="") as fh:
        truth = {row["file"]: row["class"] for row in csv.DictReader(fh)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellssl_jax.app", str(folder), "--port", "0",
         "--features", args.features], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = None
    shots = []
    try:
        for line in proc.stdout:
            found = URL.search(line)
            if found:
                base, token = f"http://{found.group(1)}", found.group(2)
                break
        else:
            raise SystemExit("the server printed no URL")
        classes = call(base, token, "/api/state")["presets"]["PBC 8 (Acevedo)"]
        call(base, token, "/api/classes", {"classes": classes})
        wait_job(base, token, "proposals")
        queue = [c["f"] for c in call(base, token, "/api/cells")["cells"]]
        done: dict[str, int] = {}
        for name in queue:
            cls = truth[name]
            if done.get(cls, 0) < PER_CLASS:
                call(base, token, "/api/label", {"file": name, "label": cls})
                done[cls] = done.get(cls, 0) + 1
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=driver_path))
        wait = WebDriverWait(driver, 120)
        args.out.mkdir(parents=True, exist_ok=True)
        driver.get(f"{base}/?token={token}")
        wait.until(lambda d: "select proposes" in d.find_element(By.ID, "source").text)
        time.sleep(1.0)  # thumbnails
        shots.append(shoot(driver, args.out / "app_label.jpg"))
        driver.find_element(By.ID, "tab-classes").click()
        time.sleep(0.5)
        shots.append(shoot(driver, args.out / "app_classes.jpg"))
        driver.find_element(By.ID, "tab-classify").click()
        driver.find_element(By.ID, "run-classify").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#job-classify[data-state=done]"))
        wait.until(lambda d: "cross-validated" in d.find_element(By.ID, "classify-result").text)
        shots.append(shoot(driver, args.out / "app_classify.jpg"))
        driver.find_element(By.ID, "tab-review").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#review .group .cell"))
        time.sleep(1.0)
        shots.append(shoot(driver, args.out / "app_review.jpg"))
        driver.find_element(By.ID, "tab-export").click()
        driver.find_element(By.ID, "run-export").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#export-files li"))
        shots.append(shoot(driver, args.out / "app_export.jpg"))
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    for path in shots:
        print(path)
    return shots


if __name__ == "__main__":
    main(sys.argv[1:])
