"""The page's speed on a folder of many cells: a page of 100 thumbnails cold and warm, and a
key press (one label saved) as the server answers it.

Generates a flat folder of `--cells` cells (hard links to the bundled sample's 196 images under
new names: every name is a new cell to the page, with its own thumbnail, so "cold" decodes
and shrinks 100 JPEGs; the files themselves are in the OS cache), starts the real server
(`python -m cellssl_jax.app FOLDER --features colorhist` in a subprocess) and waits for its
features and proposals to finish, so the background work does not run during the measurement.
Then over HTTP, as a browser does (6 keep-alive connections at once):
- cold page: 100 thumbnails (128 px) never asked for before, `--pages` different pages;
- warm page: the same 100 again (the thumbnails cache on disk; a browser with the
  `immutable` header does not even ask), and revalidated (If-None-Match -> 304);
- key press: POST /api/label, one at a time (each committed to SQLite with fsync before the
  answer), `--keys` presses, and undo;
- refit: a correction (which refits, as on the review screen) on the labels left after the
  undos, then `--refits` more corrections: from the POST to the classify job's end (the
  review's predictions of every cell ready), and the job's own seconds.

    python scripts/bench/bench_app.py --out runs/bench_app                 # 10,000 cells
    python scripts/bench/bench_app.py --out runs/bench_app --cells 2000
    python scripts/bench/bench_app.py --out runs/bench_app --cells 5000 --pages 1 --keys 300
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from cellssl_jax.demo import SAMPLE

URL = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)")
CONNECTIONS = 6  # a browser's connections per host


def make_folder(folder: Path, cells: int) -> list[str]:
    """`cells` hard links (copies where links fail) to the sample's images -> their names."""
    images = sorted(SAMPLE.rglob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(cells):
        name = f"cell_{i:05d}.jpg"
        target = folder / name
        if not target.exists():
            try:
                os.link(images[i % len(images)], target)
            except OSError:
                target.write_bytes(images[i % len(images)].read_bytes())
        names.append(name)
    return names


class Client:
    """One keep-alive HTTP connection per thread, with the token."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers={"X-Token": self.token, **(headers or {})})
        r = self.conn.getresponse()
        return r.status, r.read()

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=json.dumps(body),
                          headers={"X-Token": self.token, "Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, r.read()


def fetch_page(clients: list[Client], names: list[str],
               etags: dict[str, str] | None = None) -> tuple[float, dict]:
    """Wall seconds to fetch the thumbnails of `names` over the connections (conditional GETs
    when `etags` are given) -> (seconds, {status: count})."""
    per = [names[k::len(clients)] for k in range(len(clients))]

    def work(k: int) -> list[int]:
        return [clients[k].get(f"/api/thumb?file={quote(name)}&size=128",
                               {"If-None-Match": etags[name]} if etags else None)[0]
                for name in per[k]]

    with ThreadPoolExecutor(len(clients)) as pool:
        start = time.perf_counter()
        results = list(pool.map(work, range(len(clients))))
        seconds = time.perf_counter() - start
    seen: dict[int, int] = {}
    for statuses in results:
        for s in statuses:
            seen[s] = seen.get(s, 0) + 1
    return seconds, seen


def refit(client: Client, name: str, label: str) -> tuple[float, float]:
    """A correction of `name` (the server queues classify for it) -> (wall seconds from the
    POST to the classify job's end, the job's own seconds)."""
    before = json.loads(client.get("/api/version")[1])["jobs"]["classify"]["runs"]
    start = time.perf_counter()
    status, body = client.post("/api/label", {"file": name, "label": label, "kind": "correction"})
    assert status == 200, body
    while True:
        job = json.loads(client.get("/api/version")[1])["jobs"]["classify"]
        if job["runs"] > before and job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if job["state"] != "done":
        raise SystemExit(f"classify failed: {job['error']}")
    return seconds, job["seconds"]


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"median_ms": 1000 * statistics.median(values),
            "p95_ms": 1000 * values[int(0.95 * (len(values) - 1))],
            "max_ms": 1000 * values[-1], "n": len(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (the cells too)")
    parser.add_argument("--cells", type=int, default=10_000, help="cells in the folder")
    parser.add_argument("--pages", type=int, default=5, help="cold pages of 100 to time")
    parser.add_argument("--keys", type=int, default=300, help="key presses to time")
    parser.add_argument("--refits", type=int, default=3,
                        help="refits (corrections) to time after the first")
    args = parser.parse_args(argv)
    folder = args.out / f"cells_{args.cells}"
    names = make_folder(folder, args.cells)
    state = args.out / f".state_{args.cells}_{time.time_ns()}"  # fresh: cold thumbnails
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellssl_jax.app", str(folder), "--port", "0", "--features",
         "colorhist", "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            found = URL.search(line)
            if found:
                port, token = int(found.group(1)), found.group(2)
                break
        else:
            raise SystemExit("the server printed no URL")
        clients = [Client(port, token) for _ in range(CONNECTIONS)]
        start = time.perf_counter()
        while True:  # the background work first: features and proposals of every cell
            jobs = json.loads(clients[0].get("/api/version")[1])["jobs"]
            if jobs["features"]["state"] == "failed":
                raise SystemExit(f"features failed: {jobs['features']['error']}")
            if jobs["proposals"]["state"] == "done":
                break
            time.sleep(0.5)
        background = time.perf_counter() - start
        print(f"{args.cells} cells; features + proposals (colorhist) in the background: "
              f"{background:.1f} s")

        cold, warm, revalidated = [], [], []
        for page in range(args.pages):
            page_names = names[page * 100:(page + 1) * 100]
            seconds, seen = fetch_page(clients, page_names)
            assert seen == {200: len(page_names)}, seen
            cold.append(seconds)
            seconds, seen = fetch_page(clients, page_names)
            assert seen == {200: len(page_names)}, seen
            warm.append(seconds)
        for page in range(args.pages):
            page_names = names[page * 100:(page + 1) * 100]
            etags = {}
            for name in page_names:
                clients[0].conn.request("GET", f"/api/thumb?file={quote(name)}&size=128",
                                        headers={"X-Token": token})
                r = clients[0].conn.getresponse()
                r.read()
                etags[name] = r.getheader("ETag")
            seconds, seen = fetch_page(clients, page_names, etags)
            assert seen == {304: len(page_names)}, seen
            revalidated.append(seconds)

        status, body = clients[0].post("/api/classes", {"classes": [f"c{i}" for i in range(8)]})
        assert status == 200, body
        keys, undos = [], []
        for i in range(args.keys):
            start = time.perf_counter()
            status, body = clients[0].post("/api/label",
                                           {"file": names[i], "label": f"c{i % 8}"})
            keys.append(time.perf_counter() - start)
            assert status == 200, body
        for _ in range(min(50, args.keys)):
            start = time.perf_counter()
            status, body = clients[0].post("/api/undo", {})
            undos.append(time.perf_counter() - start)
            assert status == 200 and json.loads(body)["undone"], body

        labelled = args.keys - min(50, args.keys)
        refits, refit_jobs = [], []
        for i in range(args.refits + 1):  # the first refit also fills caches: timed apart
            seconds, job_seconds = refit(clients[0], names[labelled + i], f"c{i % 8}")
            refits.append(seconds)
            refit_jobs.append(job_seconds)
            print(f"refit {i} on {labelled + i + 1} labels: {seconds:.2f} s "
                  f"(job {job_seconds:.2f} s)")
    finally:
        proc.terminate()
        proc.wait(30)
    result = {
        "cells": args.cells,
        "background_features_and_proposals_s": round(background, 1),
        "page_of_100_cold_ms": summary(cold),
        "page_of_100_warm_ms": summary(warm),
        "page_of_100_revalidated_304_ms": summary(revalidated),
        "key_press_label_ms": summary(keys),
        "undo_ms": summary(undos),
        "first_refit_s": round(refits[0], 2),
        "refit_ms": summary(refits[1:]) if refits[1:] else None,
        "refit_job_s": refit_jobs,
        "connections": CONNECTIONS,
        "load_average_after": os.getloadavg(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_app.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
