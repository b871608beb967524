"""Figures a haematologist reads: sizes as ticks, titles naming data and features, explained
bands, single sizes as points, percent rows that add up, embeddings coloured by a CSV."""

from __future__ import annotations

import csv

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cellssl_jax import figures, visualize
from cellssl_jax.fewshot.features import Features, save_features
from cellssl_jax.fewshot.protocols import direct_transfer, fewshot_curve
from cellssl_jax.fewshot.report import curve_figure, summarise, whole_percent_rows, write_report

NAMES = ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def features(names: list[str], per_class: int, seed: int) -> Features:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(names)), per_class)
    x = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(len(names), 8)[y]
    return Features(x.astype(np.float32), y, names, [f"c{i}.png" for i in range(len(y))],
                    "enc+colorhist_3x32", "ab" * 32)


def test_curve_has_the_sizes_as_ticks_and_a_title_naming_data_and_features(tmp_path):
    ev = fewshot_curve(features(NAMES, 12, 0), features(NAMES, 6, 1), [1, 2, 5, 10],
                       repeats=3, classifiers=["lr", "knn"], rule="vote")
    ev.dataset = "pbc"
    fig = curve_figure(ev, summarise(ev))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5", "10"]
    assert "pbc - enc+colorhist_3x32" in ax.get_title()
    assert "± 1 std over 3 draws" in ax.get_legend().get_title().get_text()
    xs = [line.get_xdata() for line in ax.get_lines()]
    assert not np.allclose(xs[0], xs[1])  # dodged: one classifier never sits on another
    plt.close(fig)
    write_report(ev, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "- dataset: pbc" in report and "- features: enc+colorhist_3x32" in report
    assert "60 labelled train cells to draw from, 30 test cells scored" in report
    assert "| train cells per repetition | 5 | 10 | 25 | 50 |" in report


def test_single_size_is_points_with_error_bars_on_a_fitted_range():
    source = features(["basophil", "eosinophil", "ig", "lymphocyte", "monocyte", "neutrophil"],
                      10, 0)
    target = features(["Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil"], 6, 1)
    ev = direct_transfer(source, target, "acevedo", "raabin", n_per_class=5, repeats=3)
    summary = summarise(ev)
    fig = curve_figure(ev, summary)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SVM", "LR", "KNN"]
    assert len(ax.containers) == 3  # one error bar per classifier, each at its own x
    low, high = ax.get_ylim()
    for row in summary:
        m, s = 100 * row["balanced_accuracy_mean"], 100 * row["balanced_accuracy_std"]
        assert low <= m - s and m + s <= high
    assert 0 <= low and high <= 100 and high - low < 100  # not a flat line on 0-100
    assert "acevedo -> raabin" in ax.get_title()
    plt.close(fig)


def test_confusion_percent_rows_add_up_to_100():
    conf = np.random.default_rng(0).dirichlet(np.ones(7), 7)
    shown = whole_percent_rows(conf)
    assert (shown.sum(axis=1) == 100).all() and (np.abs(shown - 100 * conf) < 1).all()
    assert whole_percent_rows(np.zeros((2, 2))).sum() == 0  # a class never seen: no row


def test_embedding_coloured_by_predictions_or_a_labels_file(tmp_path):
    rng = np.random.default_rng(0)
    paths = [str(tmp_path / "today" / f"cell_{i}.jpg") for i in range(30)]
    x = rng.normal(size=(30, 6))
    feats = save_features(tmp_path / "f.npz", x, np.full(30, -1), [], paths, "test", "")
    pred = tmp_path / "predictions.csv"
    with open(pred, "w", newline="") as fh:
        rows = [["file", "predicted", "a", "b"]]
        rows += [[f"cell_{i}.jpg", "b" if i % 2 else "a", 0.5, 0.5] for i in range(25)]
        csv.writer(fh).writerows(rows)
    labels, names, column = figures.classes_from_csv(pred, paths)
    assert names == ["a", "b"] and column == "predicted"
    assert labels[:25].tolist() == [i % 2 for i in range(25)] and (labels[25:] == -1).all()
    out = tmp_path / "by_pred"
    visualize.main(["embedding", "--features_file", str(feats), "--colour_by", str(pred),
                    "--out", str(out)])
    assert (out / "embedding.png").stat().st_size > 0
    truth = tmp_path / "truth.csv"
    truth.write_text("file,class\ntoday/cell_3.jpg,monocyte\n")
    labels, names, column = figures.classes_from_csv(truth, paths)
    assert names == ["monocyte"] and column == "class" and labels.tolist().count(0) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\nx,y\n")
    with pytest.raises(SystemExit, match="'predicted'"):
        visualize.main(["embedding", "--features_file", str(feats), "--colour_by", str(bad),
                        "--out", str(out)])
