"""Helpers of the page's tests (tests/test_app_*.py): a folder of real sample cells with their
true classes, and the page's server in a subprocess (a real uvicorn on a free port)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cellssl_jax

SAMPLE = Path(cellssl_jax.__file__).parent / "assets" / "sample"  # (demo imports the encoder)
URL = re.compile(r"http://(127\.0\.0\.1:\d+)/\?token=(\S+)")


def sample_cells(folder: Path, n: int = 100) -> dict[str, str]:
    """Copy the first `n` unlabelled cells of the bundled sample into `folder` (flat) -> their
    true classes by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(SAMPLE / "unlabelled_truth.csv", newline="") as fh:
        truth = {row["file"]: row["class"] for row in csv.DictReader(fh)}
    names = sorted(truth)[:n]
    for name in names:
        shutil.copy(SAMPLE / "unlabelled" / name, folder / name)
    return {name: truth[name] for name in names}


class Server:
    """`python -m cellssl_jax.app FOLDER --port 0 ...` in a subprocess: its base URL and token
    once it has printed them."""

    def __init__(self, folder: Path, *args: str, timeout: float = 60.0):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cellssl_jax.app", str(folder), "--port", "0",
             "--features", "colorhist", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            found = URL.search(line)
            if found:
                self.base = f"http://{found.group(1)}"
                self.token = found.group(2)
                return
        self.proc.kill()
        raise RuntimeError("the server printed no URL:\n" + "".join(self.lines)
                           + (self.proc.stdout.read() or ""))

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
