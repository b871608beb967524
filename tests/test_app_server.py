"""The page's server as a user starts it (`python -m cellssl_jax.app` in a subprocess, a real
uvicorn): labels confirmed before a `kill -9` are there after a restart; a second server on
the same state is refused; bad folders end with `<prog>: error:` and status 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from app_helpers import Server, sample_cells

pytestmark = pytest.mark.slow  # a few server starts (imports of the features stack)


def call(server: Server, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.base + path, data=data,
                                     headers={"X-Token": server.token})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def test_kill_9_loses_no_confirmed_label(tmp_path):
    folder = tmp_path / "cells"
    truth = sample_cells(folder, 30)
    server = Server(folder)
    try:
        call(server, "/api/classes", {"classes": sorted(set(truth.values()))})
        confirmed = {}
        for name, cls in sorted(truth.items()):  # each answered = confirmed to the page
            call(server, "/api/label", {"file": name, "label": cls})
            confirmed[name] = cls
        call(server, "/api/undo", {})  # the last one taken back
        del confirmed[max(confirmed)]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
    again = Server(folder)  # the lock died with the process: a restart is allowed
    try:
        assert call(again, "/api/cells")["labels"] == confirmed
        assert call(again, "/api/state")["undo_depth"] == len(confirmed)
    finally:
        again.stop()


def test_kill_9_in_the_middle_of_concurrent_labels(tmp_path):
    """Four tabs label at once; the server is killed while requests are in flight: every label
    whose answer arrived is there after the restart, and nothing that was not sent."""
    folder = tmp_path / "cells"
    truth = sample_cells(folder, 100)
    server = Server(folder)
    confirmed: dict[str, str] = {}
    lock = threading.Lock()
    try:
        call(server, "/api/classes", {"classes": sorted(set(truth.values()))})
        names = sorted(truth)

        def tab(k: int) -> None:
            for name in names[k::4]:
                try:
                    call(server, "/api/label", {"file": name, "label": truth[name]})
                except OSError:  # killed: this one's answer never came
                    return
                with lock:
                    confirmed[name] = truth[name]

        threads = [threading.Thread(target=tab, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(confirmed) < 40 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(confirmed) >= 40, "the labels did not go through"
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        for t in threads:
            t.join(60)
        seen = dict(confirmed)
    finally:
        server.stop()
    assert len(seen) < len(truth)  # killed in the middle
    again = Server(folder)
    try:
        stored = call(again, "/api/cells")["labels"]
    finally:
        again.stop()
    assert seen.items() <= stored.items()
    assert stored.items() <= truth.items()


def test_a_second_server_on_the_same_state_is_refused(tmp_path):
    folder = tmp_path / "cells"
    sample_cells(folder, 3)
    first = Server(folder)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "cellssl_jax.app", str(folder), "--port", "0"],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "python -m cellssl_jax.app: error: another server is using" in second.stderr
        assert "--state" in second.stderr and first.base.split("//")[1] in second.stderr
        assert call(first, "/api/state")["cells"] == 3  # the first one is untouched
    finally:
        first.stop()


@pytest.mark.parametrize("case", ["missing", "state_inside", "state_unmakeable", "empty"])
def test_bad_folders_end_with_a_message(tmp_path, case):
    folder = tmp_path / "cells"
    folder.mkdir()
    sample_cells(folder, 1) if case != "empty" else None
    args = {"missing": [str(tmp_path / "nope")],
            "state_inside": [str(folder), "--state", str(folder / "state")],
            "state_unmakeable": [str(folder), "--state", str(folder / "cell_000.jpg" / ".s")],
            "empty": [str(folder)]}[case]
    expected = {"missing": "does not exist", "state_inside": "inside",
                "state_unmakeable": "--state DIR", "empty": "no images"}[case]
    r = subprocess.run([sys.executable, "-m", "cellssl_jax.app", *args, "--port", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    error = [line for line in r.stderr.splitlines() if "error:" in line]
    assert error and error[-1].startswith("python -m cellssl_jax.app: error:"), r.stderr
    assert expected in error[-1]
