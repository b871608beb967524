"""Few-shot labelling of a lab's cells: fit a classifier on a few labelled cells (their
features), classify the unlabelled ones, and write what a lab reads (predictions, the
differential count, the cells to review). The library under `classify` and the demo; named for
the task, as `fewshot/` is for the paper's protocols on features files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from cellssl_jax.data.images import relative_name
from cellssl_jax.data.reading import FolderSource
from cellssl_jax.featurize import Featurizer, featurize_folder
from cellssl_jax.featurize.extraction import write_csv
from cellssl_jax.fewshot.differential import (
    DEFAULT_METHOD,
    PRESET,
    Method,
    differential,
    interval_method,
)
from cellssl_jax.fewshot.features import Features

log = logging.getLogger(__name__)

# The labelled cells' cross-validated balanced accuracy below which the count is flagged: on
# 288 validation folders (PBC, BM and their white cells, 5-20 labels/class, default method) the
# count was off by 8.6-11.9 points per class on average below it and by 1.1-3.0 above 0.7;
# 113 of the 121 folders off by > 4 points were below it
# (docs/measurements/2026-12-05_low_separation/).
LOW_SEPARATION = 0.6


@dataclass
class Result:
    """Predictions of one classify run (rows follow the unlabelled features' order), with the
    features it was fitted on and predicted, so callers need not read them back from disk."""

    labelled: Features
    unlabelled: Features
    proba: np.ndarray  # [N, C]
    cv_name: str
    cv_accuracy: float
    cv_balanced_accuracy: float
    method: str = DEFAULT_METHOD
    percent: np.ndarray | None = None  # [C] the differential count (fewshot/differential.py)
    low: np.ndarray | None = None  # [C] its 95 % interval, percent
    high: np.ndarray | None = None

    @property
    def class_names(self) -> list[str]:
        return self.labelled.class_names

    @property
    def paths(self) -> list[str]:
        return self.unlabelled.paths

    @property
    def predicted(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @property
    def margin(self) -> np.ndarray:
        """Top probability minus the runner-up's: small = the classifier hesitates."""
        if self.proba.shape[1] < 2:
            return np.ones(len(self.proba))
        top2 = np.sort(self.proba, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    def counts(self) -> np.ndarray:
        return np.bincount(self.predicted, minlength=len(self.class_names))


def separation_warning(cv_balanced_accuracy: float, class_names: Sequence[str]) -> str | None:
    """A warning in plain words when the labelled classes overlap too much for the count to be
    read: the percents then lean toward equal shares, which no interval makes obvious."""
    if cv_balanced_accuracy >= LOW_SEPARATION:
        return None
    return (f"The features separate the labelled classes poorly: cross-validated balanced "
            f"accuracy {cv_balanced_accuracy:.0%} (chance {1 / len(class_names):.0%}; below "
            f"{LOW_SEPARATION:.0%} the count on validation folders was off by 9-12 points per "
            "class on average, its percents leaning toward equal shares). Label more cells per "
            "class (select --labelled proposes which) or check the images' stain and focus "
            "before reporting this count.")


def check_classes(names: list[str], labels: np.ndarray, where: str, what: str) -> None:
    """At least 2 classes and 2 cells in each (one to fit, one to cross-validate); `what`
    qualifies the cells in the message ("readable " after extraction, "" before)."""
    if len(names) < 2:
        raise ValueError(f"{where}: need at least 2 class folders, found {names}")
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    small = [f"{c} ({n})" for c, n in zip(names, counts, strict=True) if n < 2]
    if small:
        raise ValueError(
            f"every class needs at least 2 {what}labelled cells; too few in: {', '.join(small)}"
        )


def check_labelled(feats: Features) -> None:
    """Every class needs at least 2 readable cells (one to fit, one to cross-validate)."""
    check_classes(feats.class_names, feats.labels, feats.source, "readable ")


def classify_features(labelled: Features, unlabelled: Features,
                      method: str = DEFAULT_METHOD) -> Result:
    """Fit `method` (fewshot/differential.py; a classifier name alone is today's rule with
    it) on the labelled features, label and count the unlabelled ones, with a 95 % interval
    per class; the labelled cells' cross-validated accuracy (stratified 5-fold, or
    leave-one-out when a class has fewer than 5 cells) as a sanity number.

    The prediction is the most probable class, so predictions, probabilities and margins agree.
    """
    Method.parse(method)
    check_labelled(labelled)
    if len(unlabelled.features) == 0:
        raise ValueError(f"{unlabelled.source}: no readable unlabelled cells to classify")
    if labelled.dim != unlabelled.dim:
        raise ValueError(f"feature dimensions differ ({labelled.dim} vs {unlabelled.dim})")
    d = differential(labelled.features, labelled.labels, unlabelled.features,
                     labelled.class_names, method)
    y, pred = d.cv_true, d.cv_pred
    return Result(labelled, unlabelled, d.proba, d.cv_name, float((pred == y).mean()),
                  float(balanced_accuracy_score(y, pred)), method, d.percent, d.low, d.high)


def write_outputs(result: Result, out: Path, root: Path, review: int) -> dict[str, Path]:
    """predictions.csv, counts.csv and review.csv under `out`; file names relative to `root`."""
    out.mkdir(parents=True, exist_ok=True)
    names = result.class_names

    pred, margin = result.predicted, result.margin
    rows = [
        [relative_name(p, root), names[k], *(f"{q:.4f}" for q in pr)]
        for p, k, pr in zip(result.paths, pred, result.proba, strict=True)
    ]
    files = {
        "predictions": write_csv(out / "predictions.csv", ["file", "predicted", *names], rows)
    }
    counts = result.counts()
    total = int(counts.sum())
    percent = 100.0 * counts / total if result.percent is None else result.percent
    low = percent if result.low is None else result.low
    high = percent if result.high is None else result.high
    rows = [[c, int(n), f"{p:.1f}", f"{lo:.1f}", f"{hi:.1f}"]
            for c, n, p, lo, hi in zip(names, counts, percent, low, high, strict=True)]
    files["counts"] = write_csv(
        out / "counts.csv", ["class", "cells", "percent", "percent_low95", "percent_high95"],
        [*rows, ["total", total, "100.0", "", ""]],
    )
    order = np.argsort(margin, kind="stable")[:review]
    rows = []
    for rank, i in enumerate(order, 1):
        second = np.argsort(result.proba[i])[-2] if len(names) > 1 else pred[i]
        rows.append(
            [
                rank,
                relative_name(result.paths[i], root),
                names[pred[i]],
                f"{result.proba[i, pred[i]]:.4f}",
                names[second],
                f"{result.proba[i, second]:.4f}",
                f"{margin[i]:.4f}",
            ]
        )
    files["review"] = write_csv(
        out / "review.csv",
        [
            "rank",
            "file",
            "predicted",
            "probability",
            "runner_up",
            "runner_up_probability",
            "margin",
        ],
        rows,
    )
    return files


def labelled_folder(folder: str | Path) -> FolderSource:
    """A `--labelled` folder's scan: it must exist and hold one sub-folder per class."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--labelled folder {folder} does not exist")
    source = FolderSource(folder)
    if not source.class_names:
        raise ValueError(
            f"--labelled {folder} holds loose images; it needs one sub-folder "
            "per class (<labelled>/<class>/<image>)"
        )
    return source


def check_folders(
    labelled: str | Path, unlabelled: str | Path, method: str = DEFAULT_METHOD
) -> tuple[FolderSource, FolderSource]:
    """Everything that can be checked before the slow part (features) -> the folders' scans."""
    Method.parse(method)
    train_source = labelled_folder(labelled)
    unlabelled = Path(unlabelled)
    if not unlabelled.is_dir():
        raise FileNotFoundError(f"--unlabelled folder {unlabelled} does not exist")
    check_classes(train_source.class_names, train_source.folder.labels, str(labelled), "")
    return train_source, FolderSource(unlabelled)  # an empty folder is an error here


def classify_folders(
    labelled: str | Path,
    unlabelled: str | Path,
    out: str | Path,
    featurizer: Featurizer,
    method: str = DEFAULT_METHOD,
    review: int = 20,
    sources: tuple[FolderSource, FolderSource] | None = None,
) -> tuple[dict, Result]:
    """Featurize both folders (features files under `out`), fit on the labelled cells,
    classify the unlabelled ones and write predictions, counts, review list and skipped/flagged
    lists (`classify_and_write`) -> (the summary also written to `<out>/summary.json`, the
    predictions). `sources`: check_folders' result, when checked already."""
    train_source, test_source = sources or check_folders(labelled, unlabelled, method)
    labelled, unlabelled, out = Path(labelled), Path(unlabelled), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, train_stats = featurize_folder(
        labelled, featurizer, out / "labelled_features.npz", source=train_source
    )
    test, test_stats = featurize_folder(
        unlabelled, featurizer, out / "unlabelled_features.npz", source=test_source
    )
    return classify_and_write(
        train, test, out, labelled, unlabelled, method, review,
        skipped=[*train_stats["skipped_files"], *test_stats["skipped_files"]],
        flagged=[*train_stats["flagged_files"], *test_stats["flagged_files"]],
        encoded=train_stats["encoded"] + test_stats["encoded"],
        cached=train_stats["from_cache"] + test_stats["from_cache"],
    )


def classify_and_write(
    train: Features,
    test: Features,
    out: str | Path,
    labelled: str | Path,
    unlabelled: str | Path,
    method: str = DEFAULT_METHOD,
    review: int = 20,
    skipped: Sequence[tuple[str, str]] = (),
    flagged: Sequence[tuple[str, str]] = (),
    encoded: int = 0,
    cached: int = 0,
) -> tuple[dict, Result]:
    """`classify_features` on features already made, then `write_outputs` under `out` (names
    relative to the `unlabelled` folder), the skipped and flagged lists ((file, reason) pairs,
    when any) and `<out>/summary.json` -> (the summary, the predictions). What `classify` writes
    after its extraction; the lab page calls it on the features it holds. `encoded`/`cached`:
    the cells the extraction encoded / read from the features cache, for the summary."""
    out = Path(out)
    result = classify_features(train, test, method)
    files = write_outputs(result, out, Path(unlabelled), review)
    skipped, flagged = list(skipped), list(flagged)
    if skipped:
        files["skipped"] = write_csv(out / "skipped.csv", ["file", "reason"], skipped)
    if flagged:
        files["flagged"] = write_csv(out / "flagged.csv", ["file", "reason"], flagged)
    counts = result.counts()
    warning = separation_warning(result.cv_balanced_accuracy, result.class_names)
    if warning:
        log.warning(warning)
    summary = {
        "labelled": str(labelled),
        "unlabelled": str(unlabelled),
        "features": train.encoder,
        "features_sha256": train.encoder_sha256,
        "method": method,
        "classifier": Method.parse(method).classifier,
        "preset": PRESET,
        "class_names": result.class_names,
        "labelled_cells": int(len(train.labels)),
        "classified_cells": int(len(test.paths)),
        "skipped": [s for s, _ in skipped],
        "flagged": [list(f) for f in flagged],
        "encoded_cells": int(encoded),
        "cached_cells": int(cached),
        "cv": result.cv_name,
        "cv_accuracy": result.cv_accuracy,
        "cv_balanced_accuracy": result.cv_balanced_accuracy,
        "counts": dict(zip(result.class_names, counts.tolist(), strict=True)),
        "percent": dict(zip(result.class_names, np.round(result.percent, 2).tolist(),
                            strict=True)),
        "percent_interval95": {c: [round(float(lo), 2), round(float(hi), 2)] for c, lo, hi
                               in zip(result.class_names, result.low, result.high, strict=True)},
        "count_interval": interval_method(method),
        "warnings": [warning] if warning else [],
        "outputs": {k: str(v) for k, v in files.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary, result
