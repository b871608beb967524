"""The lab's differential: method names, counts that sum to 100 with intervals around them, and
bad input (a class absent from the folder, a folder of one class, one labelled cell in a class,
100,000 folder cells) answered soundly or with a clear message, never NaN."""

from __future__ import annotations

import numpy as np
import pytest

from cellssl_jax.fewshot.differential import (
    DEFAULT_METHOD,
    LEGACY_METHOD,
    Method,
    differential,
    posteriors,
)

NAMES = ["a", "b", "c"]


def cells(counts, dim=6, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    centres = np.random.default_rng(42).normal(size=(len(counts), dim)) * 4
    return centres[y] + spread * rng.normal(size=(len(y), dim)), y


def test_method_names():
    m = Method.parse("lr+l2+fold+spread+em2.5+relabel")
    assert (m.classifier, m.l2, m.fold, m.spread, m.prior, m.pseudo, m.relabel) == (
        "lr", True, True, True, "em", 2.5, True)
    assert Method.parse("svm+acc").prior == "acc" and Method.parse("lr+em").pseudo == 1.0
    m = Method.parse("knn+self+sslda+cal+rebal")
    assert (m.classifier, m.self_train, m.sslda, m.cal, m.rebal) == ("knn", True, True, True, True)
    assert Method.parse("lr+fold+sslda+ens+gate+em").gate
    assert Method.parse("lr+em2+soften").soften and not Method.parse("lr+em").soften
    for bad in ["rf", "spread+lr", "lr+em+acc", "lr+lr", "lr+relabel", "lr+foo", "svm+cal",
                "lr+gate", "lr+ens", "lr+soften", "lr+acc+soften"]:
        with pytest.raises(ValueError, match="method"):
            Method.parse(bad)
    Method.parse(DEFAULT_METHOD), Method.parse(LEGACY_METHOD)


@pytest.mark.parametrize("method", ["svm", "lr", "lr+em", "lr+acc+relabel", "lr+cal+em",
                                    "lr+l2+fold+spread+em", "lr+self", "lr+fold+sslda",
                                    "lr+fold+sslda+ens+gate+em", "lr+em+soften",
                                    DEFAULT_METHOD])
def test_separable_folder_is_counted_right(method):
    x_lab, y_lab = cells([5, 5, 5], seed=1)
    x, y = cells([120, 60, 20], seed=2)
    d = differential(x_lab, y_lab, x, NAMES, method)
    assert (d.predicted == y).mean() > 0.95
    np.testing.assert_allclose(d.percent.sum(), 100.0)
    np.testing.assert_allclose(d.percent, [60, 30, 10], atol=3.0)
    assert (d.low <= d.percent).all() and (d.percent <= d.high).all()
    assert np.isfinite(d.proba).all() and d.cv_name == "5-fold"
    assert d.counts().sum() == 200


def test_prior_correction_fixes_the_count_of_overlapping_classes():
    # overlapping classes, balanced labels, a folder of 85 / 10 / 5 %: classify-and-count
    # over-calls the rare classes; the EM estimate is closer to the truth
    x_lab, y_lab = cells([40, 40, 40], seed=3, spread=3.0)
    x, y = cells([1700, 200, 100], seed=4, spread=3.0)
    truth = 100 * np.bincount(y) / len(y)
    plain = differential(x_lab, y_lab, x, NAMES, "lr", interval=False)
    em = differential(x_lab, y_lab, x, NAMES, "lr+em", interval=False)
    assert np.abs(em.percent - truth).mean() < 0.5 * np.abs(plain.percent - truth).mean()


def test_soften_leaves_a_balanced_folder_and_brings_an_imbalanced_one_closer():
    """`soften` reruns EM only when its first estimate is far from uniform: a balanced folder
    keeps lr+em's count exactly; in a 90 / 5 / 5 folder of overlapping classes, where LR fitted
    on 5 cells per class is overconfident and EM stays near the labels' balance, the softened
    count is much closer to the truth. Labels never move."""
    x_lab, y_lab = cells([5, 5, 5], seed=13, spread=6.0)
    for counts in ([100, 100, 100], [900, 50, 50]):
        x, y = cells(counts, seed=14, spread=6.0)
        truth = 100 * np.bincount(y) / len(y)
        em = differential(x_lab, y_lab, x, NAMES, "lr+em", interval=False)
        soft = differential(x_lab, y_lab, x, NAMES, "lr+em+soften", interval=False)
        np.testing.assert_array_equal(em.predicted, soft.predicted)
        assert soft.percent.sum() == pytest.approx(100.0) and (soft.percent >= 0).all()
        if counts[0] == counts[1]:
            np.testing.assert_array_equal(em.percent, soft.percent)
        else:
            assert np.abs(soft.percent - truth).mean() < 0.5 * np.abs(em.percent - truth).mean()


def test_a_class_absent_from_the_folder_gets_a_small_sound_percent():
    x_lab, y_lab = cells([5, 5, 5], seed=5)
    x, _ = cells([100, 100, 0], seed=6)
    for method in dict.fromkeys(["lr", "lr+em", "lr+acc", "lr+l2+fold+spread+em",
                                 "lr+fold+sslda", DEFAULT_METHOD]):
        d = differential(x_lab, y_lab, x, NAMES, method)
        assert np.isfinite(d.percent).all() and np.isfinite(d.low).all()
        assert d.percent[2] < 2.0 and d.low[2] == pytest.approx(0.0, abs=1e-9)


def test_a_folder_of_one_class():
    x_lab, y_lab = cells([5, 5, 5], seed=7)
    x, _ = cells([0, 50, 0], seed=8)
    for method in dict.fromkeys(["svm", "lr+em", "lr+l2+fold+spread+em", "lr+fold+sslda",
                                 DEFAULT_METHOD]):
        d = differential(x_lab, y_lab, x, NAMES, method)
        assert d.percent[1] > 95 and np.isfinite(d.high).all()
    one, _ = cells([0, 1, 0], seed=9)  # a folder of one cell
    for method in ("lr+l2+fold+spread+em", "lr+fold+sslda"):
        d = differential(x_lab, y_lab, one, NAMES, method)
        assert d.predicted.tolist() == [1] and np.isfinite(d.percent).all()


def test_bad_labelled_cells_are_refused_with_the_reason():
    x_lab, y_lab = cells([5, 1, 5], seed=10)
    x, _ = cells([10, 10, 10])
    with pytest.raises(ValueError, match=r"at least 2 labelled cells.*\[1\] \(\[1\] cells\)"):
        differential(x_lab, y_lab, x, NAMES)
    x_lab, y_lab = cells([5, 5, 5])
    with pytest.raises(ValueError, match="no folder cells"):
        differential(x_lab, y_lab, x[:0], NAMES)
    with pytest.raises(ValueError, match="dimensions differ"):
        differential(x_lab, y_lab, x[:, :3], NAMES)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        differential(x_lab, y_lab, bad, NAMES)


def test_two_labelled_cells_per_class_and_a_large_folder():
    x_lab, y_lab = cells([2, 2, 2], seed=11)
    x, y = cells([60000, 30000, 10000], seed=12)
    for method in ("lr+l2+fold+spread+em", "lr+fold+sslda", DEFAULT_METHOD):
        proba, prior = posteriors(method, x_lab, y_lab, x, 3)
        assert proba.shape == (100000, 3) and np.isfinite(proba).all()
        assert np.isfinite(prior).all() and prior.sum() == pytest.approx(1.0)
        assert np.abs(np.bincount(proba.argmax(axis=1)) / len(y) - [0.6, 0.3, 0.1]).max() < 0.03
    d = differential(x_lab, y_lab, x[:2000], NAMES, "lr+em")
    assert d.cv_name == "leave-one-out" and np.isfinite(d.low).all()


def test_gate_keeps_the_classifier_where_the_features_barely_separate_the_classes():
    x_lab, y_lab = cells([5, 5, 5], seed=13, spread=12.0)  # nearly inseparable
    x, _ = cells([100, 60, 40], seed=14, spread=12.0)
    gated, _ = posteriors("lr+fold+sslda+gate", x_lab, y_lab, x, 3)
    plain, _ = posteriors("lr+fold", x_lab, y_lab, x, 3)
    np.testing.assert_allclose(gated, plain)
    x_lab, y_lab = cells([5, 5, 5], seed=13)  # well separated: sslda runs
    x, _ = cells([100, 60, 40], seed=14)
    gated, _ = posteriors("lr+fold+sslda+gate", x_lab, y_lab, x, 3)
    lda, _ = posteriors("lr+fold+sslda", x_lab, y_lab, x, 3)
    np.testing.assert_allclose(gated, lda)
