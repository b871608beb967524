"""The page's API, request by request (Starlette's TestClient): the token, traversal and
symlinks, odd files, labels and undo, classify and export against the command line."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from app_helpers import sample_cells
from PIL import Image
from starlette.testclient import TestClient

from cellssl_jax.app.cells import Cells
from cellssl_jax.app.server import Context, create_app, open_context
from cellssl_jax.app.state import UNSURE, StateStore
from cellssl_jax.app.work import Worker
from cellssl_jax.fewshot.acquire import REASONS

TOKEN = "t0ken"


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    """Two real cells, a text file named .jpg, a 42-megapixel image and a symlink that points
    out of the folder; a secret image beside the folder."""
    folder = tmp_path / "cells"
    sample_cells(folder, 2)
    (folder / "broken.jpg").write_text("not an image")
    Image.new("L", (7000, 6000)).save(folder / "huge.png")
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8), "red").save(secret)
    (folder / "link.jpg").symlink_to(secret)
    return folder


def client_of(folder: Path, state: Path, start: bool = False) -> tuple[TestClient, Context]:
    """The app on `folder`; the worker runs no job unless `start` (features, as the CLI)."""
    state.mkdir(parents=True, exist_ok=True)
    store = StateStore(state)
    if start:
        ctx = open_context(folder, state, store, "colorhist", per_class=2, token=TOKEN)
    else:
        cells = Cells(folder, state / "thumbs")
        worker = Worker(cells, store, state, "colorhist", None, None, 10)
        ctx = Context(folder, state, cells, store, worker, TOKEN)
    return TestClient(create_app(ctx)), ctx


def auth(**kw):
    return {"headers": {"X-Token": TOKEN}, **kw}


def test_every_request_that_reads_or_changes_state_needs_the_token(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    reads = ["/", "/api/state", "/api/version", "/api/cells", "/api/predictions",
             "/api/thumb?file=cell_000.jpg&size=128"]
    writes = ["/api/classes", "/api/label", "/api/undo", "/api/jobs/classify"]
    for path in reads:
        assert client.get(path).status_code == 403, path
        assert client.get(path, headers={"X-Token": "wrong"}).status_code == 403, path
    for path in writes:
        assert client.post(path, json={}).status_code == 403, path
    assert "token" in client.get("/api/state").json()["error"]
    assert client.get("/api/state", **auth()).status_code == 200
    assert client.get(f"/api/state?token={TOKEN}").status_code == 200
    assert client.get("/static/app.js").status_code == 200  # the page's code: no state


def test_responses_forbid_other_origins_framing_and_referers(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    for r in (client.get("/", params={"token": TOKEN}), client.get("/api/state", **auth()),
              client.get("/api/state"), client.get("/static/app.css")):
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", [
    "../secret.jpg",
    "%2e%2e%2fsecret.jpg",          # URL-encoded: the server decodes it to ../secret.jpg
    "%252e%252e%252fsecret.jpg",    # encoded twice
    "..%5csecret.jpg",
    "ABSOLUTE",
    "./cell_000.jpg",
    "cell_000.jpg/../../secret.jpg",
])
def test_no_path_outside_the_folder_is_served(odd_folder, tmp_path, name):
    client, _ = client_of(odd_folder, tmp_path / "state")
    name = str(tmp_path / "secret.jpg") if name == "ABSOLUTE" else name
    r = client.get(f"/api/thumb?file={name}&size=128", **auth())
    assert r.status_code == 404 and "no cell" in r.json()["error"]
    r = client.post("/api/label", **auth(json={"file": name, "label": None}))
    assert r.status_code == 404
    assert client.get("/api/cells", **auth()).json()["labels"] == {}


def test_a_symlink_pointing_out_is_refused(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    r = client.get("/api/thumb?file=link.jpg&size=384", **auth())
    assert r.status_code == 403 and "outside" in r.json()["error"]


def test_static_files_do_not_leak_the_package(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    for path in ["/static/../state.py", "/static/..%2fstate.py", "/static/%2e%2e/state.py"]:
        r = client.get(path)
        assert r.status_code == 404 and "StateStore" not in r.text, path


def test_odd_files_get_a_message_not_a_crash(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    r = client.get("/api/thumb?file=broken.jpg&size=128", **auth())
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    r = client.get("/api/thumb?file=huge.png&size=128", **auth())
    assert r.status_code == 413 and "7000x6000" in r.json()["error"]
    r = client.get("/api/thumb?file=cell_000.jpg&size=77", **auth())
    assert r.status_code == 400
    assert client.post("/api/label", content=b"{no json", **auth()).status_code == 400
    assert client.get("/api/state", **auth()).status_code == 200  # still serving


def test_the_features_job_says_what_it_skipped_and_doubts(tmp_path):
    """The page's features job names the unreadable files it skipped and the doubtful ones it
    kept (here a greyscale cell), which the export lists in skipped.csv / flagged.csv."""
    folder = tmp_path / "cells"
    sample_cells(folder, 3)
    grey = Image.open(sorted(folder.iterdir())[0]).convert("L")
    grey.save(folder / "grey.png")
    (folder / "broken.jpg").write_text("not an image")
    _, ctx = client_of(folder, tmp_path / "state", start=True)
    job = ctx.worker.wait("features")
    assert job.state == "done", job.error
    assert "4 cells featurized" in job.message and "1 unreadable skipped" in job.message
    assert "1 doubtful kept" in job.message
    assert [Path(f).name for f, _ in ctx.worker.feature_notes["flagged"]] == ["grey.png"]


def test_thumbnails_are_made_once_and_cached_by_the_browser(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    r = client.get("/api/thumb?file=cell_000.jpg&size=128", **auth())
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "immutable" in r.headers["cache-control"]
    made = list((tmp_path / "state" / "thumbs" / "128").rglob("*.jpg"))
    assert len(made) == 1
    with Image.open(made[0]) as im:
        assert max(im.size) == 128
    again = client.get("/api/thumb?file=cell_000.jpg&size=128",
                       **auth(headers={"X-Token": TOKEN, "If-None-Match": r.headers["etag"]}))
    assert again.status_code == 304


def test_labels_undo_and_two_tabs(odd_folder, tmp_path):
    client, _ = client_of(odd_folder, tmp_path / "state")
    other = TestClient(client.app)  # a second tab: another client of the same server
    r = client.post("/api/classes", **auth(json={"classes": ["a", "b"]}))
    assert r.json()["classes"] == ["a", "b"]
    bad = client.post("/api/classes", **auth(json={"classes": ["a", "a/b"]}))
    assert bad.status_code == 400 and "a/b" in bad.json()["error"]
    v0 = other.get("/api/version", **auth()).json()["version"]
    r = client.post("/api/label", **auth(json={"file": "cell_000.jpg", "label": "a"}))
    assert r.status_code == 200 and r.json()["per_class"] == {"a": 1}
    assert other.get("/api/version", **auth()).json()["version"] > v0
    assert other.get("/api/cells", **auth()).json()["labels"] == {"cell_000.jpg": "a"}
    r = client.post("/api/label", **auth(json={"file": "cell_001.jpg", "label": UNSURE}))
    assert r.json()["labelled"] == 2
    bad = client.post("/api/label", **auth(json={"file": "cell_001.jpg", "label": "zzz"}))
    assert bad.status_code == 400 and "unknown class" in bad.json()["error"]
    r = client.post("/api/undo", **auth())
    assert r.json()["undone"] == {"file": "cell_001.jpg", "label": None,
                                  "version": r.json()["version"]}
    assert client.get("/api/cells", **auth()).json()["labels"] == {"cell_000.jpg": "a"}


def label_by_truth(client: TestClient, truth: dict[str, str], per_class: int) -> dict:
    """Label up to `per_class` cells of each true class through the API -> the labels."""
    done: dict[str, str] = {}
    for name, cls in sorted(truth.items()):
        if sum(v == cls for v in done.values()) < per_class:
            r = client.post("/api/label", **auth(json={"file": name, "label": cls}))
            assert r.status_code == 200, r.text
            done[name] = cls
    return done


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.slow  # classify, select and the page's jobs: ~40 s on the shared 2 cores
def test_classify_review_correct_export_equals_the_command_line(tmp_path, features_cache,
                                                                monkeypatch):
    from cellssl_jax import classify, select
    from cellssl_jax.data import reading

    folder = tmp_path / "cells"
    truth = sample_cells(folder, 60)
    client, ctx = client_of(folder, folder / ".cellssl", start=True)
    classes = sorted(set(truth.values()))
    client.post("/api/classes", **auth(json={"classes": classes}))
    assert ctx.worker.wait("features").state == "done"
    assert ctx.worker.wait("proposals").state == "done"
    proposed = client.get("/api/cells", **auth()).json()
    assert proposed["source"] == "proposals" and len(proposed["cells"]) == 16  # 2 x 8 classes
    labels = label_by_truth(client, truth, 3)
    unsure = next(n for n in sorted(truth) if n not in labels)
    client.post("/api/label", **auth(json={"file": unsure, "label": UNSURE}))

    client.post("/api/jobs/more", **auth())  # the next batch, given the labels so far
    job = ctx.worker.wait("more")
    assert job.state == "done", job.error
    more = client.get("/api/cells", **auth()).json()["cells"]
    assert [c["f"] for c in more[:16]] == [c["f"] for c in proposed["cells"]]  # kept, in order
    assert 16 < len(more) <= 32 and len({c["f"] for c in more}) == len(more)
    assert {c["why"] for c in more[16:]} <= set(REASONS)

    assert client.get("/api/predictions", **auth()).status_code == 409

    def no_decode(path):  # the page's classify and refits use the features it holds
        raise AssertionError(f"classify read {path} again")

    monkeypatch.setattr(reading, "read_image", no_decode)
    client.post("/api/jobs/classify", **auth())
    job = ctx.worker.wait("classify")
    assert job.state == "done", job.error
    pred = client.get("/api/predictions", **auth()).json()
    assert sum(len(g) for g in pred["groups"].values()) == 60
    for group in pred["groups"].values():  # least confident first
        margins = [c["m"] for c in group]
        assert margins == sorted(margins)
    # a correction of the least sure cell becomes a label, and the classifier refits
    group = next(g for g in pred["groups"].values() if g)
    cell = group[0]["f"]
    wrong = next(c for c in classes if c != truth[cell])
    r = client.post("/api/label", **auth(json={"file": cell, "label": wrong, "kind": "correction"}))
    assert r.status_code == 200
    labels[cell] = wrong
    assert ctx.worker.wait("classify").state == "done"

    client.post("/api/jobs/export", **auth())
    job = ctx.worker.wait("export")
    assert job.state == "done", job.error
    export = Path(job.result["folder"])
    rows = read_csv(export / "labels.csv")
    assert rows[0] == ["file", "class", "kind"]
    assert {r[0]: r[1] for r in rows[1:]} == labels
    assert {r[0]: r[2] for r in rows[1:]}[cell] == "correction"
    assert read_csv(export / "unsure.csv") == [["file"], [unsure]]
    on_disk = {p.name: p.parent.name for p in (export / "labelled").rglob("*.jpg")}
    assert on_disk == labels
    for name in ("predictions.csv", "counts.csv", "review.csv", "summary.json"):
        assert (export / name).is_file()

    monkeypatch.undo()  # the command line reads the images
    cli = tmp_path / "cli"
    # as bash reads it: a backslash before a newline joins the lines
    argv = shlex.split(job.result["command"].replace("\\\n", " "))
    assert argv[:3] == ["python", "-m", "cellssl_jax.classify"] and argv[-2:] == ["--out", "OUT"]
    assert argv[3:-2] == ["--labelled", str(export / "labelled"), "--unlabelled", str(folder),
                          "--features", "colorhist"]
    assert (export / "reproduce.txt").read_text().endswith(job.result["command"] + "\n")
    classify.main([*argv[3:-1], str(cli)])
    for name in ("predictions.csv", "counts.csv", "review.csv"):
        assert read_csv(cli / name) == read_csv(export / name), name
    # labels.csv is what `select --labels` reads: the next batch skips the labelled cells
    select.main(["--images", str(folder), "--labels", str(export / "labels.csv"), "--budget",
                 "4", "--features", "colorhist", "--out", str(tmp_path / "select")])
    picked = [r[1] for r in read_csv(tmp_path / "select" / "selection.csv")[1:]]
    assert len(picked) == 4 and not set(picked) & set(labels)
    # and the review screen showed what the export holds
    final = client.get("/api/predictions", **auth()).json()
    shown = {c["f"]: k for k, g in final["groups"].items() for c in g}
    exported = {r[0]: r[1] for r in read_csv(export / "predictions.csv")[1:]}
    assert shown == exported
    assert np.isclose(sum(final["counts"].values()), 60)
    assert final["warnings"] == json.loads((export / "summary.json").read_text())["warnings"]
    # a restarted server shows the same review until the next classify
    again = Worker(ctx.cells, ctx.store, ctx.state_dir, "colorhist", None, None, 2)
    assert again.predictions == {k: v for k, v in final.items() if k != "labels"}

    # an export after a new label classifies again; one after none reuses the files
    assert "no label changed" in job.message
    new = next(n for n in sorted(truth) if n not in labels and n != unsure)
    client.post("/api/label", **auth(json={"file": new, "label": truth[new]}))
    client.post("/api/jobs/export", **auth())
    job = ctx.worker.wait("export")
    assert job.state == "done" and "no label changed" not in job.message
    assert (export / "labelled" / truth[new] / new).is_file()
    assert json.loads((export / "summary.json").read_text())["labelled_cells"] == len(labels) + 1
