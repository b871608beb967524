"""classify: a lab's folder job on real cells from the bundled sample, plus its error messages."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cellssl_jax import classify, labelling
from cellssl_jax.featurize import make_featurizer
from cellssl_jax.fewshot.differential import DEFAULT_METHOD, LEGACY_METHOD
from cellssl_jax.fewshot.features import Features, load_features

SAMPLE = Path(classify.__file__).parent / "assets" / "sample"
CLASSES = ("eosinophil", "lymphocyte", "platelet")


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def lab(tmp_path: Path) -> tuple[Path, Path]:
    """6 labelled cells per class of 3 classes, 8 unlabelled cells and one corrupt file."""
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "unlabelled"
    for c in CLASSES:
        (labelled / c).mkdir(parents=True)
        for f in sorted((SAMPLE / "labelled" / c).iterdir())[:6]:
            shutil.copy(f, labelled / c / f.name)
    unlabelled.mkdir()
    for c in CLASSES:
        for f in sorted((SAMPLE / "labelled" / c).iterdir())[6:9]:
            shutil.copy(f, unlabelled / f"{c}_{f.name}")
    (unlabelled / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return labelled, unlabelled


def test_colorhist_end_to_end(lab, tmp_path, capsys):
    labelled, unlabelled = lab
    out = tmp_path / "out"
    summary = classify.main(
        [
            "--labelled",
            str(labelled),
            "--unlabelled",
            str(unlabelled),
            "--out",
            str(out),
            "--features",
            "colorhist",
            "--review",
            "4",
        ]
    )
    printed = capsys.readouterr().out
    assert "cross-validated accuracy on the 18 labelled cells (5-fold)" in printed
    assert "broken.jpg" in printed

    preds = rows(out / "predictions.csv")
    assert len(preds) == 9 and all(r["file"] != "broken.jpg" for r in preds)
    assert list(preds[0]) == ["file", "predicted", *CLASSES]
    for r in preds:
        proba = np.array([float(r[c]) for c in CLASSES])
        assert abs(proba.sum() - 1) < 1e-3
        assert r["predicted"] == CLASSES[int(proba.argmax())]
    # colour alone tells these three classes apart: the true class is the file-name prefix
    assert sum(r["file"].startswith(r["predicted"]) for r in preds) >= 7

    counts = rows(out / "counts.csv")
    assert [r["class"] for r in counts] == [*CLASSES, "total"]
    assert sum(int(r["cells"]) for r in counts[:-1]) == int(counts[-1]["cells"]) == 9
    assert abs(sum(float(r["percent"]) for r in counts[:-1]) - 100) < 0.5

    review = rows(out / "review.csv")
    margins = [float(r["margin"]) for r in review]
    assert len(review) == 4 and margins == sorted(margins)
    assert min(margins) == pytest.approx(
        min(
            sorted(float(r[c]) for c in CLASSES)[-1] - sorted(float(r[c]) for c in CLASSES)[-2]
            for r in preds
        ),
        abs=2e-4,
    )
    assert rows(out / "skipped.csv")[0]["file"].endswith("broken.jpg")
    assert summary["skipped"] and summary["classified_cells"] == 9


def test_xcit_features_with_encoder_file(lab, tmp_path, tiny_encoder):
    labelled, unlabelled = lab
    summary, result = labelling.classify_folders(
        labelled, unlabelled, tmp_path / "o", make_featurizer("xcit", tiny_encoder), "lr"
    )
    assert summary["features"] == "tiny" and len(summary["features_sha256"]) == 64
    feats = load_features(tmp_path / "o" / "labelled_features.npz")
    assert feats.features.shape == (18, 32)
    assert result.labelled.features.tobytes() == feats.features.tobytes()  # as saved
    written = rows(tmp_path / "o" / "predictions.csv")  # the returned predictions, in order
    assert [r["file"] for r in written] == [Path(p).name for p in result.paths]
    assert [r["predicted"] for r in written] == [result.class_names[k] for k in result.predicted]


def test_default_features_are_encoder_beside_colour_and_shape(lab, tmp_path, tiny_encoder):
    labelled, unlabelled = lab
    summary = classify.main(["--labelled", str(labelled), "--unlabelled", str(unlabelled),
                             "--out", str(tmp_path / "o"), "--encoder", str(tiny_encoder)])
    assert summary["features"] == "tiny+colorhist_3x32+cellshape_127"
    feats = load_features(tmp_path / "o" / "labelled_features.npz")
    assert feats.features.shape == (18, 32 + 96 + 127)
    assert "classify.log" in {p.name for p in (tmp_path / "o").iterdir()}


def synthetic(per_class: list[int], seed: int = 0, spread: float = 12.0) -> Features:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(per_class)), per_class)
    x = rng.normal(size=(len(labels), 3)) + spread * np.eye(len(per_class), 3)[labels]
    return Features(
        x.astype(np.float32),
        labels,
        [f"c{k}" for k in range(len(per_class))],
        [f"cell{i}.png" for i in range(len(labels))],
    )


def test_classify_features_separable_and_cv_choice():
    train, test = synthetic([6, 6, 6]), synthetic([4, 4, 4], seed=1)
    for name in ("svm", "lr", "knn"):
        result = labelling.classify_features(train, test, name)
        assert result.cv_name == "5-fold" and result.cv_accuracy >= 0.85, name
        assert (result.predicted == test.labels).mean() >= 0.9, name
        assert np.allclose(result.proba.sum(1), 1.0) and (result.margin >= 0).all()
    tiny = labelling.classify_features(synthetic([2, 3, 4]), test, "svm")
    assert tiny.cv_name == "leave-one-out"


def test_a_count_from_overlapping_classes_carries_a_warning(tmp_path, caplog):
    """Where the labelled classes barely separate, the count leans toward equal shares: the
    summary, its file and the log say so (the page: test_app_*); where they separate, nothing
    is said."""
    for spread, warned in ((12.0, False), (0.0, True)):
        train, test = synthetic([8, 8, 8], spread=spread), synthetic([30, 5, 5], 1, spread)
        caplog.clear()
        summary, result = labelling.classify_and_write(train, test, tmp_path / str(spread),
                                                       tmp_path, tmp_path)
        assert (result.cv_balanced_accuracy < labelling.LOW_SEPARATION) == warned
        assert len(summary["warnings"]) == warned
        saved = json.loads((tmp_path / str(spread) / "summary.json").read_text())
        assert saved["warnings"] == summary["warnings"]
        if warned:
            assert f"{result.cv_balanced_accuracy:.0%}" in summary["warnings"][0]
            assert summary["warnings"][0] in caplog.text


def run_cli(*argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        classify.main(list(argv))
    assert exc.value.code == 2  # one error format: "<prog>: error: <message>", exit status 2
    assert str(exc.value).startswith("python -m cellssl_jax.classify: error: ")
    return str(exc.value)


def test_errors_name_the_problem_before_any_extraction(lab, tmp_path, monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("extraction started before the inputs were checked")

    monkeypatch.setattr(labelling, "featurize_folder", no_extraction)
    monkeypatch.setattr(classify, "make_featurizer", no_extraction)
    labelled, unlabelled = lab
    out = str(tmp_path / "out")
    common = ["--out", out, "--features", "colorhist"]
    msg = run_cli("--labelled", str(tmp_path / "nope"), "--unlabelled", str(unlabelled), *common)
    assert "--labelled folder" in msg and "does not exist" in msg
    msg = run_cli("--labelled", str(unlabelled), "--unlabelled", str(unlabelled), *common)
    assert "one sub-folder per class" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = run_cli("--labelled", str(labelled), "--unlabelled", str(empty), *common)
    assert "no images" in msg
    for f in sorted((labelled / "platelet").iterdir())[1:]:
        f.unlink()
    msg = run_cli("--labelled", str(labelled), "--unlabelled", str(unlabelled), *common)
    assert "at least 2" in msg and "platelet (1)" in msg


def test_a_class_left_with_one_readable_cell_is_named(lab, tmp_path):
    labelled, unlabelled = lab
    for f in sorted((labelled / "platelet").iterdir())[1:]:
        f.write_bytes(b"not an image")
    msg = run_cli("--labelled", str(labelled), "--unlabelled", str(unlabelled),
                  "--out", str(tmp_path / "out"), "--features", "colorhist")
    assert "at least 2 readable labelled cells" in msg and "platelet (1)" in msg


def test_counts_carry_a_95_percent_interval_and_the_old_rule_is_one_flag_away(lab, tmp_path):
    labelled, unlabelled = lab
    base = ["--labelled", str(labelled), "--unlabelled", str(unlabelled), "--features",
            "colorhist"]
    summary = classify.main([*base, "--out", str(tmp_path / "new")])
    assert summary["method"] == DEFAULT_METHOD and "bootstrap" in summary["count_interval"]
    counts = rows(tmp_path / "new" / "counts.csv")
    assert list(counts[0]) == ["class", "cells", "percent", "percent_low95", "percent_high95"]
    for r in counts[:-1]:
        low, pct, high = (float(r[k]) for k in ("percent_low95", "percent", "percent_high95"))
        assert 0.0 <= low <= pct <= high <= 100.0
        assert summary["percent_interval95"][r["class"]] == pytest.approx([low, high], abs=0.06)
    old = classify.main([*base, "--out", str(tmp_path / "old"), "--method", LEGACY_METHOD])
    assert old["method"] == old["classifier"] == "svm"
    counts = rows(tmp_path / "old" / "counts.csv")  # classify and count: percent = cells share
    for r in counts[:-1]:
        assert float(r["percent"]) == pytest.approx(100 * int(r["cells"]) / 9, abs=0.06)
    assert classify.main([*base, "--out", str(tmp_path / "c"), "--classifier", "lr"])[
        "method"] == "lr"
    msg = run_cli(*base, "--out", str(tmp_path / "x"), "--method", "lr", "--classifier", "svm")
    assert "not both" in msg
    msg = run_cli(*base, "--out", str(tmp_path / "x"), "--method", "forest")
    assert "unknown method 'forest'" in msg
