"""A lab's job: fit a classifier on a few labelled cells, classify a folder of unlabelled cells.

    python -m cellssl_jax.classify --labelled DIR --unlabelled DIR --out DIR

`--labelled` holds one sub-folder per class (a few cells each), `--unlabelled` the cells to
classify. Writes under `--out`: predictions.csv (every cell, its predicted class and the
probability of each class), counts.csv (the differential count), review.csv (the least sure
cells, by the margin between the two most probable classes, for a human to check),
skipped.csv (unreadable images, with the reason), flagged.csv (doubtful images that were
classified: greyscale, transparent, far larger than the read size) and summary.json; prints a
cross-validated accuracy on the labelled cells as a sanity number. The folders are checked
before any extraction, and the encoder's features come from the features cache when it has
them (`--no_cache` bypasses it).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import LeaveOneOut, StratifiedKFold, cross_val_predict

from cellssl_jax.cache import cache_root
from cellssl_jax.data.images import relative_name
from cellssl_jax.data.reading import FolderSource
from cellssl_jax.extract import (
    FEATURE_KINDS,
    Extractor,
    add_cache_flag,
    extract,
    load_extractor,
)
from cellssl_jax.fewshot.classifiers import CLASSIFIERS, pipeline
from cellssl_jax.fewshot.features import Features, load_features
from cellssl_jax.logs import log_to_console

log = logging.getLogger("cellssl_jax.classify")

PRESET = "paper-code"
CV_FOLDS = 5
# chosen on the PBC validation split (scripts/select_default.py, docs/MODEL_CARD.md): best of
# colour, encoder and both, for SVM and LR; on the test part, once: SVM 86.6 % vs colour 86.1 %,
# LR 89.1 % vs 87.1 %
DEFAULT_FEATURES = "xcit+colorhist"


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


def cross_validate(feats: Features, name: str) -> tuple[str, float, float]:
    """Accuracy and balanced accuracy of `name` on the labelled cells: stratified 5-fold, or
    leave-one-out when a class has fewer than 5 cells. SVC is scored with its decision function
    (probabilities need >= 2 cells per class inside every fold)."""
    x, y = feats.features, feats.labels
    smallest = int(np.bincount(y).min())
    if smallest >= CV_FOLDS:
        splitter, cv_name = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0), "5-fold"
    else:
        splitter, cv_name = LeaveOneOut(), "leave-one-out"
    pred = cross_val_predict(pipeline(name, PRESET), x, y, cv=splitter)
    return cv_name, float((pred == y).mean()), float(balanced_accuracy_score(y, pred))


def classify_features(labelled: Features, unlabelled: Features, name: str = "svm") -> Result:
    """Fit the paper-code pipeline `name` on the labelled features, predict the unlabelled.

    The prediction is the most probable class, so predictions, probabilities and margins agree.
    """
    check_labelled(labelled)
    if len(unlabelled.features) == 0:
        raise ValueError(f"{unlabelled.source}: no readable unlabelled cells to classify")
    if labelled.dim != unlabelled.dim:
        raise ValueError(f"feature dimensions differ ({labelled.dim} vs {unlabelled.dim})")
    cv_name, acc, bacc = cross_validate(labelled, name)
    model = pipeline(name, PRESET, probability="calibrated", labels=labelled.labels)
    model.fit(labelled.features, labelled.labels)
    proba = np.zeros((len(unlabelled.features), len(labelled.class_names)))
    proba[:, model.classes_] = model.predict_proba(unlabelled.features)
    return Result(labelled, unlabelled, proba, cv_name, acc, bacc)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


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
        "predictions": _write_csv(out / "predictions.csv", ["file", "predicted", *names], rows)
    }
    counts = result.counts()
    total = int(counts.sum())
    rows = [[c, int(n), f"{100.0 * n / total:.1f}"] for c, n in zip(names, counts, strict=True)]
    files["counts"] = _write_csv(
        out / "counts.csv", ["class", "cells", "percent"], [*rows, ["total", total, "100.0"]]
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
    files["review"] = _write_csv(
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


def folder_features(
    images: str | Path, out: Path, extractor: Extractor, source: FolderSource | None = None
) -> tuple[Features, dict]:
    """Features of every readable image under `images` (`source`: its scan, when done already),
    saved to `out` (npz) and loaded, with extract's stats (skipped and flagged files)."""
    stats = extract(source or FolderSource(images), str(images), extractor, out, workers=2)
    return load_features(out), stats


def run(
    labelled: str | Path,
    unlabelled: str | Path,
    out: str | Path,
    classifier: str = "svm",
    features: str = DEFAULT_FEATURES,
    checkpoint: str | Path | None = None,
    review: int = 20,
    extractor: Extractor | None = None,
    cache: Path | None = None,
) -> tuple[dict, Result]:
    """The whole job -> (the summary also written to `<out>/summary.json`, the predictions).

    `cache`: the features cache folder (None: none), unless `extractor` is given."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose from {', '.join(CLASSIFIERS)}")
    labelled, unlabelled, out = Path(labelled), Path(unlabelled), Path(out)
    for role, folder in (("labelled", labelled), ("unlabelled", unlabelled)):
        if not folder.is_dir():
            raise FileNotFoundError(f"--{role} folder {folder} does not exist")
    # everything that can be checked without features is, before the slow part
    train_source = FolderSource(labelled)
    if not train_source.class_names:
        raise ValueError(
            f"--labelled {labelled} holds loose images; it needs one sub-folder "
            "per class (<labelled>/<class>/<image>)"
        )
    check_classes(train_source.class_names, train_source.folder.labels, str(labelled), "")
    test_source = FolderSource(unlabelled)  # an empty folder is an error here
    extractor = extractor or load_extractor(features, checkpoint, cache=cache)
    out.mkdir(parents=True, exist_ok=True)
    train, train_stats = folder_features(
        labelled, out / "labelled_features.npz", extractor, train_source
    )
    test, test_stats = folder_features(
        unlabelled, out / "unlabelled_features.npz", extractor, test_source
    )
    result = classify_features(train, test, classifier)
    files = write_outputs(result, out, unlabelled, review)
    skipped = [*train_stats["skipped_files"], *test_stats["skipped_files"]]
    if skipped:
        files["skipped"] = _write_csv(out / "skipped.csv", ["file", "reason"], skipped)
    flagged = [*train_stats["flagged_files"], *test_stats["flagged_files"]]
    if flagged:
        files["flagged"] = _write_csv(out / "flagged.csv", ["file", "reason"], flagged)
    counts = result.counts()
    summary = {
        "labelled": str(labelled),
        "unlabelled": str(unlabelled),
        "features": extractor.name,
        "features_sha256": extractor.sha256,
        "classifier": classifier,
        "preset": PRESET,
        "class_names": result.class_names,
        "labelled_cells": int(len(train.labels)),
        "classified_cells": int(len(test.paths)),
        "skipped": [s for s, _ in skipped],
        "flagged": [list(f) for f in flagged],
        "encoded_cells": train_stats["encoded"] + test_stats["encoded"],
        "cached_cells": train_stats["from_cache"] + test_stats["from_cache"],
        "cv": result.cv_name,
        "cv_accuracy": result.cv_accuracy,
        "cv_balanced_accuracy": result.cv_balanced_accuracy,
        "counts": dict(zip(result.class_names, counts.tolist(), strict=True)),
        "outputs": {k: str(v) for k, v in files.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary, result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cellssl_jax.classify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--labelled", required=True, help="folder with one sub-folder per class")
    parser.add_argument("--unlabelled", required=True, help="folder of cells to classify")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--checkpoint", help="encoder file (default: the bundled encoder)")
    parser.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default="svm",
        help="paper-code preset: PowerTransformer -> PCA -> SVC / LR / KNN",
    )
    parser.add_argument(
        "--features",
        choices=FEATURE_KINDS,
        default=DEFAULT_FEATURES,
        help="xcit+colorhist (default): the encoder's features beside colour histograms, the "
        "best on the PBC validation split (docs/MODEL_CARD.md); xcit: encoder only; "
        "colorhist: colour only",
    )
    parser.add_argument(
        "--review", type=int, default=20, help="how many least-sure cells review.csv lists"
    )
    add_cache_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.review < 0:
        raise SystemExit("error: --review must be >= 0")
    log_to_console()
    try:
        summary, _ = run(
            args.labelled,
            args.unlabelled,
            args.out,
            args.classifier,
            args.features,
            args.checkpoint,
            args.review,
            cache=cache_root(not args.no_cache),
        )
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(
        f"cross-validated accuracy on the {summary['labelled_cells']} labelled cells "
        f"({summary['cv']}): {summary['cv_accuracy']:.1%} "
        f"(balanced {summary['cv_balanced_accuracy']:.1%})"
    )
    total = summary["classified_cells"]
    print(f"differential count of {total} cells:")
    for name, n in summary["counts"].items():
        print(f"  {name:<20} {n:>5}  {100.0 * n / max(total, 1):5.1f} %")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable images (listed in skipped.csv):")
        for s in summary["skipped"]:
            print(f"  {s}")
    if summary["flagged"]:
        print(f"flagged {len(summary['flagged'])} doubtful images, classified all the same "
              "(listed with the reason in flagged.csv)")
    for key, path in summary["outputs"].items():
        print(f"{key}: {path}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
