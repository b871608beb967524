"""The page's long work, off the request path: one worker thread runs one job at a time and
reports its progress (polled by the page). The jobs call the project's libraries and nothing
else decides a class: features (`featurize`, with the features cache), the cells to label first
(`proposals.propose`, as `select`), and classify (`labelling.classify_and_write`, what
`python -m cellssl_jax.classify` runs after its extraction) on the features the page holds: the
labels are written out as class sub-folders and their rows taken in that folder's scan order,
so the command line on the exported folder gives the page's result without the page decoding
an image again.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import queue
import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellssl_jax.app.cells import Cells
from cellssl_jax.app.state import UNSURE, StateStore
from cellssl_jax.featurize import Featurizer, featurize_folder, make_featurizer
from cellssl_jax.fewshot.acquire import next_batch
from cellssl_jax.fewshot.features import Features, load_features, save_features
from cellssl_jax.labelling import classify_and_write, labelled_folder
from cellssl_jax.proposals import propose

log = logging.getLogger("cellssl_jax.app")

MIN_CELLS = 2  # labels a class needs to enter the fit (classify cross-validates)
JOBS = ("features", "proposals", "more", "classify", "export")


@dataclass
class Job:
    """What the page shows of a job: state idle/queued/running/done/failed, done of total."""

    name: str
    state: str = "idle"
    done: int = 0
    total: int = 0
    message: str = ""
    error: str = ""
    seconds: float = 0.0
    runs: int = 0  # runs finished (done or failed): how a page sees a quick rerun end
    result: dict = field(default_factory=dict)

    def public(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "state", "done", "total", "message",
                                              "error", "seconds", "runs", "result")}


class Counting:
    """A featurizer that counts the rows it has made (the progress of an extraction); all else
    is the wrapped featurizer's."""

    def __init__(self, inner: Featurizer, job: Job):
        self.inner, self.job = inner, job

    def __call__(self, prepared):
        rows = self.inner(prepared)
        self.job.done += len(prepared)
        return rows

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def flat_name(name: str) -> str:
    """A cell's file name inside a class sub-folder of the export (sub-folders joined by __)."""
    return name.replace("/", "__")


def write_labelled(cells: Cells, labels: dict[str, str], folder: Path) -> dict[str, int]:
    """The labels as `<folder>/<class>/<cell>` (hard links, else copies), as `classify
    --labelled` reads them -> cells per class written. `folder` is emptied first; a class with
    fewer than MIN_CELLS labels is left out (classify needs 2 per class to cross-validate)."""
    if folder.exists():
        shutil.rmtree(folder)
    by_class: dict[str, list[str]] = {}
    for name, label in sorted(labels.items()):
        if label != UNSURE and name in cells.by_name:
            by_class.setdefault(label, []).append(name)
    counts = {}
    for label, names in sorted(by_class.items()):
        if len(names) < MIN_CELLS:
            continue
        for name in names:
            target = folder / label / flat_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = cells.check(name).path
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        counts[label] = len(names)
    return counts


class Worker:
    """Runs the page's jobs in one background thread; keeps their results for the routes."""

    def __init__(self, cells: Cells, store: StateStore, state_dir: Path, kind: str,
                 encoder: Path | None, cache: Path | None, per_class: int):
        self.cells, self.store, self.state_dir = cells, store, Path(state_dir)
        self.kind, self.encoder, self.cache, self.per_class = kind, encoder, cache, per_class
        self.jobs = {name: Job(name) for name in JOBS}
        self.features = None  # Features of every readable cell of the folder
        # their extraction's unreadable (skipped) and doubtful (flagged) files: [file, reason]
        self.feature_notes: dict[str, list] = {"skipped": [], "flagged": []}
        self.queue_names: list[str] = []  # the label screen's cells, proposals first
        self.reasons: dict[str, str] = {}  # why each was proposed (typical, seed, uncertain...)
        self.predictions: dict | None = None  # the review screen's groups (kept across starts)
        saved = self._saved_predictions()
        if saved.exists():  # the last classify's, while every cell it names is still there
            last = json.loads(saved.read_text())
            if all(c["f"] in cells.by_name for g in last["groups"].values() for c in g):
                self.predictions = last
        self.export_dir = self.state_dir / "export"  # classify's --out: the page's results
        self.classified_version = -1  # the labels' version the files in export_dir are of
        self._featurizer: Featurizer | None = None
        self._todo: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cellssl-app-worker", daemon=True)
        self._thread.start()

    # --- the queue of jobs -------------------------------------------------------------
    def submit(self, name: str) -> Job:
        """Queue a job, once: a job already waiting is not queued again (a running one is, so
        labels made while it runs are in the next run)."""
        job = self.jobs[name]
        with self._lock:
            if name not in self._pending:
                self._pending.add(name)
                if job.state != "running":
                    job.state, job.error, job.message = "queued", "", ""
                self._todo.put(name)
        return job

    def status(self) -> dict:
        return {name: job.public() for name, job in self.jobs.items()}

    def _loop(self) -> None:
        while True:
            name = self._todo.get()
            job = self.jobs[name]
            with self._lock:
                self._pending.discard(name)
                job.state, job.error, job.done, job.total = "running", "", 0, 0
            start = time.perf_counter()
            try:
                job.result = getattr(self, f"_run_{name}")(job) or {}
                job.state = "done"
            except Exception as err:  # shown on the page; the server keeps serving
                log.exception("job %s failed", name)
                job.state, job.error = "failed", str(err) or type(err).__name__
            job.seconds = round(time.perf_counter() - start, 2)
            job.runs += 1

    def wait(self, name: str, timeout: float = 600.0) -> Job:
        """Block until job `name` is neither queued nor running (for scripts and tests)."""
        end = time.monotonic() + timeout
        while name in self._pending or self.jobs[name].state in ("queued", "running"):
            if time.monotonic() > end:
                raise TimeoutError(f"job {name} still {self.jobs[name].state} after {timeout} s")
            time.sleep(0.05)
        return self.jobs[name]

    # --- the jobs --------------------------------------------------------------------------
    def featurizer(self, job: Job) -> Featurizer:
        if self._featurizer is None:
            job.message = f"loading the {self.kind} featurizer"
            self._featurizer = make_featurizer(self.kind, self.encoder, cache=self.cache)
        return self._featurizer

    def _run_features(self, job: Job) -> dict:
        """Features of every cell, kept in `<state>/features/` and reused while the folder and
        the featurizer are unchanged (a second start is instant)."""
        folder = self.state_dir / "features"
        folder.mkdir(exist_ok=True)
        out = folder / f"{self.kind.replace('+', '_')}.npz"
        stamp = out.with_suffix(".json")
        signature = self.cells.signature()
        featurizer = self.featurizer(job)
        key = {"kind": self.kind, "sha256": featurizer.sha256, "cells": signature}
        saved = json.loads(stamp.read_text()) if out.exists() and stamp.exists() else {}
        if all(saved.get(k) == v for k, v in key.items()):
            self.features = load_features(out)
            self.feature_notes = {k: saved.get(k, []) for k in self.feature_notes}
            job.message = "features read back from the state folder"
        else:
            job.total, job.message = len(self.cells), f"extracting {self.kind} features"
            self.features, stats = featurize_folder(self.cells.folder, Counting(featurizer, job),
                                                    out)
            self.feature_notes = {k: [list(f) for f in stats[f"{k}_files"]]
                                  for k in self.feature_notes}
            stamp.write_text(json.dumps({**key, **self.feature_notes}))
            doubtful = len(self.feature_notes["flagged"])
            job.message = (f"{stats['images']} cells featurized ({stats['from_cache']} from the "
                           f"features cache, {stats['skipped']} unreadable skipped"
                           + (f", {doubtful} doubtful kept: see flagged.csv in the export"
                              if doubtful else "") + ")")
        job.done = job.total = len(self.features.paths)
        self.submit("proposals")
        return {"cells": len(self.features.paths)}

    def budget(self) -> int:
        return self.per_class * max(len(self.store.classes()), 2)

    def _feature_names(self) -> list[str]:
        if self.features is None:
            raise ValueError("the features are not ready yet")
        return [Path(p).relative_to(self.cells.folder).as_posix() for p in self.features.paths]

    def _save_queue(self, names: list[str], reasons: dict[str, str]) -> None:
        self.queue_names, self.reasons = names, reasons
        (self.state_dir / "queue.json").write_text(json.dumps({"cells": names,
                                                                "reasons": reasons}))

    def _run_proposals(self, job: Job) -> dict:
        """The label screen's first cells: `propose` on the features (k-means, as `select`
        before any label), most representative first; kept in `<state>/queue.json`."""
        names = self._feature_names()
        saved = self.state_dir / "queue.json"
        data = json.loads(saved.read_text()) if saved.exists() else {"cells": [], "reasons": {}}
        queue_names = [n for n in data["cells"] if n in self.cells.by_name]
        reasons = data["reasons"]
        budget = min(len(names), self.budget())
        if budget > len(queue_names):
            job.message = f"choosing {budget} cells to label first"
            picks, _ = propose(self.features.features, budget)
            have = set(queue_names)
            new = [names[i] for i in picks if names[i] not in have]
            queue_names += new
            reasons.update({n: "typical" for n in new})
        self._save_queue(queue_names, reasons)
        return {"proposed": len(queue_names)}

    def _run_more(self, job: Job) -> dict:
        """The next batch given the labels so far (`fewshot.acquire.next_batch`, as `select
        --labels`): typical cells of groups not covered yet, then the classifier's doubts
        weighted toward short classes. Cells already on the screen stay."""
        names = self._feature_names()
        row_of = {n: i for i, n in enumerate(names)}
        classes = self.store.classes()
        have = set(self.queue_names)
        labelled = [(row_of[n], classes.index(lab)) for n, lab in self.store.labels().items()
                    if n in row_of and lab in classes]
        budget = min(self.budget(), len(names) - len(labelled))
        if budget < 1:
            raise ValueError("every cell is labelled already")
        job.message = f"choosing the next {budget} cells from {len(labelled)} labels"
        if labelled:
            rows, cls = (np.asarray(a) for a in zip(*labelled, strict=True))
            proposal = next_batch(self.features.features, rows, cls, budget)
            picks, why = proposal.index, proposal.reason
        else:  # no labels yet: more of the same k-means proposals
            picks, _ = propose(self.features.features, min(len(names), len(have) + budget))
            why = ["typical"] * len(picks)
        new = [(names[i], r) for i, r in zip(picks, why, strict=True) if names[i] not in have]
        self._save_queue(self.queue_names + [n for n, _ in new], {**self.reasons, **dict(new)})
        found = [r for _, r in new]
        return {"proposed": len(new), "reasons": {r: found.count(r) for r in dict.fromkeys(found)}}

    def _classify(self, job: Job, labels: dict[str, str]) -> tuple[dict, object]:
        """`classify` on `labels` into `<state>/export/` (the previous run's files go first)."""
        out = self.export_dir
        out.mkdir(exist_ok=True)
        for old in out.iterdir():  # our own previous run only: files, and labelled/ below
            if old.is_file():
                old.unlink()
        counts = write_labelled(self.cells, labels, out / "labelled")
        if len(counts) < 2:
            raise ValueError(f"label at least {MIN_CELLS} cells in each of at least 2 classes "
                             f"first; classes with enough labels so far: {counts or 'none'}")
        short = sorted({v for v in labels.values() if v != UNSURE} - set(counts))
        left_out = (f"; left out (fewer than {MIN_CELLS} labels): {', '.join(short)}"
                    if short else "")
        if self.features is None:  # classify asked for before the features job ran
            self._run_features(job)
        job.message = "fitting the classifier" + left_out
        train, test = self._labelled_features(out / "labelled", labels), self.features
        for name, f in (("labelled", train), ("unlabelled", test)):  # as classify leaves them
            save_features(out / f"{name}_features.npz", f.features, f.labels, f.class_names,
                          f.paths, f.encoder, f.encoder_sha256, f.skipped, f.read_size)
        skipped, flagged = self._notes(out / "labelled", labels)
        summary, result = classify_and_write(train, test, out, out / "labelled",
                                             self.cells.folder, skipped=skipped,
                                             flagged=flagged)
        job.done = job.total
        job.message = f"classified {summary['classified_cells']} cells" + left_out
        return summary, result

    def _labelled_features(self, labelled: Path, labels: dict[str, str]) -> Features:
        """The labelled cells' rows of the held features, as classify would extract them from
        `labelled` (write_labelled's folder): in the order and with the classes of its scan (a
        listing, no decode); an unreadable cell has no row, and classify skips it too."""
        feats = self.features
        row_of = {n: i for i, n in enumerate(self._feature_names())}
        cell_of = {(lab, flat_name(n)): n for n, lab in labels.items()}
        source = labelled_folder(labelled)
        rows, classes, paths = [], [], []
        for path, k in zip(source.folder.paths, source.folder.labels, strict=True):
            name = cell_of[(source.class_names[k], path.name)]
            if name in row_of:
                rows.append(row_of[name])
                classes.append(int(k))
                paths.append(str(path))
        return Features(feats.features[rows], np.asarray(classes, dtype=np.int64),
                        list(source.class_names), paths, feats.encoder, feats.encoder_sha256,
                        source=str(labelled), read_size=feats.read_size)

    def _notes(self, labelled: Path, labels: dict[str, str]) -> list[list]:
        """The skipped and flagged files ([file, reason]) as classify lists them: those of the
        labelled copies first, then the folder's (both from the features job's notes)."""
        lists = []
        for kind in ("skipped", "flagged"):
            notes = [tuple(f) for f in self.feature_notes[kind]]
            copies = []
            for file, reason in notes:
                name = Path(file).relative_to(self.cells.folder).as_posix()
                copy = labelled / labels.get(name, UNSURE) / flat_name(name)
                if labels.get(name, UNSURE) != UNSURE and copy.exists():
                    copies.append((str(copy), reason))
            lists.append([*sorted(copies), *notes])
        return lists

    def _run_classify(self, job: Job) -> dict:
        """Fit on the labels, classify every cell; the review screen's groups."""
        version, labels, _ = self.store.snapshot()
        summary, result = self._classify(job, labels)
        self.classified_version = version
        names = [Path(p).relative_to(self.cells.folder).as_posix() for p in result.paths]
        proba, pred, margin = result.proba, result.predicted, result.margin
        classes = result.class_names
        groups = {c: [] for c in classes}
        for i in np.argsort(margin, kind="stable"):  # least confident first
            groups[classes[pred[i]]].append(
                {"f": names[i], "v": self.cells.by_name[names[i]].version,
                 "p": round(float(proba[i, pred[i]]), 4),
                 "m": round(float(margin[i]), 4)})
        self.predictions = {"classes": classes, "groups": groups, "version": version,
                            "counts": summary["counts"], "cv": summary["cv"],
                            "cv_balanced_accuracy": summary["cv_balanced_accuracy"],
                            "features": summary["features"], "method": summary["method"],
                            "percent": summary["percent"],
                            "interval95": summary["percent_interval95"],
                            "interval_method": summary["count_interval"],
                            "warnings": summary["warnings"]}
        self._saved_predictions().write_text(json.dumps(self.predictions))
        return {"counts": summary["counts"], "labels_version": version}

    def _saved_predictions(self) -> Path:
        return self.state_dir / "predictions.json"

    def _run_export(self, job: Job) -> dict:
        """`<state>/export/`: labelled/<class>/ and labels.csv (the labels), the files
        `classify --out` writes for them (the last classify's when no label changed since),
        and the command line that reproduces them."""
        out = self.export_dir
        version, labels, kinds = self.store.snapshot()
        if version != self.classified_version or not (out / "summary.json").exists():
            self._classify(job, labels)
            self.classified_version = version
        else:
            job.message = "the last classify's files: no label changed since"
        summary = json.loads((out / "summary.json").read_text())
        labels = sorted(labels.items())
        with open(out / "labels.csv", "w", newline="") as fh:  # as `select --labels` reads
            writer = csv.writer(fh)
            writer.writerow(["file", "class", "kind"])
            writer.writerows([f, lab, kinds[f]] for f, lab in labels if lab != UNSURE)
        with open(out / "unsure.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["file"], *([f] for f, lab in labels if lab == UNSURE)])
        options = [("--labelled", str(out / "labelled")), ("--unlabelled", str(self.cells.folder)),
                   ("--features", self.kind),
                   *([("--encoder", str(self.encoder))] if self.encoder else []), ("--out", "OUT")]
        command = " \\\n    ".join(  # one option a line: reads well, pastes as one command
            [shlex.join(["python", "-m", "cellssl_jax.classify"])]
            + [shlex.join(option) for option in options])
        (out / "reproduce.txt").write_text(
            "# the same predictions, counts and review list from the command line:\n"
            + command + "\n")
        files = sorted(str(p.relative_to(out)) for p in out.iterdir() if p.is_file())
        return {"folder": str(out), "files": [*files, "labelled/"], "command": command,
                "counts": summary["counts"]}
