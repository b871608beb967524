"""The page end to end in a real browser: Debian's headless Chromium driven by Selenium against
the server in a subprocess (a real uvicorn), on 100 cells of the bundled sample with colour
histograms (`--features colorhist`: the encoder's first read would dominate the test's time;
the page calls the same libraries for every kind). classes -> label -> undo -> reload -> a
second tab -> classify -> review -> correct -> export, asserting on the exported files, and
the command line on the exported labels gives the exported predictions.

Skips with the reason where chromium, chromedriver or selenium is missing (`.ci/run` installs
them: `apt-get install -y chromium chromium-driver`)."""

from __future__ import annotations

import csv
import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from app_helpers import Server, sample_cells

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no chromium/chromedriver on PATH (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a browser, a server and a classify: ~40 s on 2 shared cores
PER_CLASS = 3  # labels per class the test makes
PBC = "PBC 8 (Acevedo)"


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def api(server: Server, path: str) -> dict:
    request = urllib.request.Request(server.base + path, headers={"X-Token": server.token})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def text_is(driver, element_id: str, text: str, timeout: float = 30):
    WebDriverWait(driver, timeout).until(
        lambda d: text in d.find_element(By.ID, element_id).text)


def test_label_undo_reload_classify_review_correct_export(tmp_path, browser):
    from cellssl_jax import classify

    folder = tmp_path / "cells"
    truth = sample_cells(folder, 100)
    server = Server(folder)
    try:
        d = browser
        wait = WebDriverWait(d, 60)
        d.get(server.url)
        # classes: a preset
        wait.until(lambda d: d.find_element(By.ID, "screen-classes").is_displayed())
        Select(d.find_element(By.ID, "preset")).select_by_value(PBC)
        d.find_element(By.ID, "save-classes").click()
        text_is(d, "source", "select proposes")
        classes = api(server, "/api/state")["classes"]
        assert len(classes) == 8

        # label: keys only, the true class of each proposed cell until 3 per class, typed in
        # one go (the page moves on by itself; the labels saved show it kept up)
        body = d.find_element(By.TAG_NAME, "body")
        made: dict[str, str] = {}
        keys = []
        for cell in api(server, "/api/cells")["cells"]:
            cls = truth[cell["f"]]
            if sum(v == cls for v in made.values()) < PER_CLASS:
                keys.append(str(classes.index(cls) + 1))
                made[cell["f"]] = cls
            else:
                keys.append(Keys.ARROW_RIGHT)
            if len(made) == PER_CLASS * len(classes):
                break
        assert d.find_element(By.ID, "current-name").text.startswith("1 / ")
        body.send_keys(*keys)
        text_is(d, "saved", f"{len(made)} labels saved")
        assert api(server, "/api/cells")["labels"] == made

        # undo the last label, then reload: the undo holds
        body.send_keys("z")
        undone = list(made)[-1]
        del made[undone]
        text_is(d, "saved", f"{len(made)} labels saved")
        d.refresh()
        text_is(d, "saved", f"{len(made)} labels saved")
        count = f'#class-buttons .count[data-label="{truth[undone]}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, count))
        assert d.find_element(By.CSS_SELECTOR, count).text == f"{PER_CLASS - 1} / 10"
        assert api(server, "/api/cells")["labels"] == made

        # a second tab sees the labels, labels a cell, and the first tab follows
        first_tab = d.current_window_handle
        d.switch_to.new_window("tab")
        d.get(server.url)
        text_is(d, "saved", f"{len(made)} labels saved")
        queue = [c["f"] for c in api(server, "/api/cells")["cells"]]
        extra = next(n for n in queue if n not in made and n != undone)
        cell = f'#grid .cell[data-file="{extra}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, cell))
        d.find_element(By.CSS_SELECTOR, cell).click()
        d.find_element(By.TAG_NAME, "body").send_keys(str(classes.index(truth[extra]) + 1))
        made[extra] = truth[extra]
        text_is(d, "saved", f"{len(made)} labels saved")
        d.close()
        d.switch_to.window(first_tab)
        text_is(d, "saved", f"{len(made)} labels saved")

        # the next batch, from the labels so far (key m)
        before = len(api(server, "/api/cells")["cells"])
        d.find_element(By.TAG_NAME, "body").send_keys("m")
        text_is(d, "message", "more cells to label")
        assert len(api(server, "/api/cells")["cells"]) > before

        # classify every cell, with visible progress
        d.find_element(By.ID, "tab-classify").click()
        d.find_element(By.ID, "run-classify").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#job-classify[data-state=done]"))
        text_is(d, "classify-result", "cross-validated")
        shown = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#classify-result .warning")]
        assert shown == api(server, "/api/predictions")["warnings"]

        # review: hover + key corrects one cell, a click + menu another
        d.find_element(By.ID, "tab-review").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#review .group .cell"))
        assert [e.text for e in d.find_elements(By.CSS_SELECTOR, "#review .warning")] == shown
        groups = d.find_elements(By.CSS_SELECTOR, "#review .group")
        first = groups[0].find_elements(By.CSS_SELECTOR, ".cell:not(.labelled)")[0]
        hover_file, predicted = first.get_attribute("data-file"), groups[0].get_attribute(
            "data-class")
        hover_to = next(c for c in classes if c != predicted)
        ActionChains(d).move_to_element(first).send_keys(
            str(classes.index(hover_to) + 1)).perform()
        corrected = f'#review .cell.corrected[data-file="{hover_file}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, corrected))
        made[hover_file] = hover_to

        second = d.find_elements(By.CSS_SELECTOR, "#review .group")[1]
        cell = second.find_elements(By.CSS_SELECTOR, ".cell:not(.labelled)")[0]
        click_file, click_pred = cell.get_attribute("data-file"), second.get_attribute(
            "data-class")
        click_to = next(c for c in reversed(classes) if c != click_pred)
        cell.click()
        d.find_element(By.CSS_SELECTOR, f'#menu button[data-label="{click_to}"]').click()
        wait.until(lambda d: api(server, "/api/cells")["labels"].get(click_file) == click_to)
        made[click_file] = click_to
        # the refit after the corrections is offered, not forced under the mouse
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#refit button"))
        d.find_element(By.CSS_SELECTOR, "#refit button").click()
        wait.until(lambda d: not d.find_elements(By.ID, "refit"))
        assert d.find_elements(By.CSS_SELECTOR, "#review .group .cell")

        # export
        d.find_element(By.ID, "tab-export").click()
        d.find_element(By.ID, "run-export").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#export-files li"))
        listed = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#export-files li")]
    finally:
        server.stop()

    export = folder / ".cellssl" / "export"
    for name in ("predictions.csv", "counts.csv", "review.csv", "summary.json", "labels.csv"):
        assert name in listed and (export / name).is_file()
    rows = read_csv(export / "labels.csv")[1:]
    assert {r[0]: r[1] for r in rows} == made
    kinds = {r[0]: r[2] for r in rows}
    assert kinds[hover_file] == kinds[click_file] == "correction"
    assert undone not in kinds
    assert {p.name: p.parent.name for p in (export / "labelled").rglob("*.jpg")} == made
    predicted = {r[0]: r[1] for r in read_csv(export / "predictions.csv")[1:]}
    assert set(predicted) == set(truth)

    cli = tmp_path / "cli"
    classify.main(["--labelled", str(export / "labelled"), "--unlabelled", str(folder),
                   "--features", "colorhist", "--out", str(cli)])
    for name in ("predictions.csv", "counts.csv", "review.csv"):
        assert read_csv(cli / name) == read_csv(export / name), name
