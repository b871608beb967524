import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cellssl_jax.fewshot import protocols
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.protocols import _fit_predict, direct_transfer, fewshot_curve


def _feats(names, counts, centres, seed=0, dim=12):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(names)), counts)
    x = np.asarray(centres, dtype=np.float64)[labels] + rng.normal(size=(len(labels), dim))
    return Features(x.astype(np.float32), labels, list(names), [f"c{i}" for i in labels])


def _centres(k, dim=12, scale=4.0, seed=1):
    return np.random.default_rng(seed).normal(size=(k, dim)) * scale


def test_fewshot_imports_no_jax():
    code = (
        "import sys, cellssl_jax.fewshot.protocols, cellssl_jax.fewshot.report, "
        "cellssl_jax.evaluate; assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fewshot_curve_runs_are_complete_deterministic_and_warning_free():
    c = _centres(3)
    train, test = _feats("abc", [30, 30, 4], c), _feats("abc", [10, 10, 3], c, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # votes: libsvm's probabilities (the paper-code rule) can invert at 2 cells/class, and
        # this test is about completeness and determinism, not that rule (tested on its own)
        ev = fewshot_curve(train, test, [2, 10], repeats=3, seed=5, jobs=1, rule="vote")
    assert len(ev.runs) == 3 * 2 * 3
    assert {(r.classifier, r.n_per_class, r.n_train) for r in ev.runs} >= {
        ("svm", 2, 6),
        ("knn", 10, 24),  # the 4-cell class contributes all it has
    }
    assert all(ev.balanced_accuracy(r) > 0.9 for r in ev.runs)  # well-separated clusters
    again = fewshot_curve(train, test, [2, 10], repeats=3, seed=5, jobs=2, rule="vote")
    for a, b in zip(ev.runs, again.runs, strict=True):
        assert np.array_equal(a.confusion, b.confusion)  # independent of the worker count


def test_fewshot_seed_changes_the_draws():
    c = _centres(3, scale=0.7)  # overlapping classes: different draws give different errors
    train, test = _feats("abc", [30, 30, 30], c), _feats("abc", [20, 20, 20], c, seed=2)
    runs = [
        fewshot_curve(train, test, [3], repeats=3, seed=s, classifiers=["knn"]).runs
        for s in (5, 5, 6)
    ]
    same = [np.array_equal(a.confusion, b.confusion) for a, b in zip(runs[0], runs[1], strict=True)]
    diff = [np.array_equal(a.confusion, b.confusion) for a, b in zip(runs[0], runs[2], strict=True)]
    assert all(same) and not all(diff)
    assert not np.array_equal(runs[0][0].confusion, runs[0][1].confusion)  # repetitions differ


def test_fewshot_matches_test_classes_by_name():
    c = _centres(3)
    train = _feats("abc", [20, 20, 20], c)
    test = _feats("cab", [5, 5, 5], c[[2, 0, 1]], seed=3)
    ev = fewshot_curve(train, test, [10], repeats=1, classifiers=["lr"])
    assert ev.class_names == ["a", "b", "c"]
    assert ev.balanced_accuracy(ev.runs[0]) > 0.9


def test_fewshot_bad_input_is_named():
    c = _centres(2)
    train, test = _feats("ab", [10, 10], c), _feats("ab", [5, 5], c)
    unlabelled = Features(train.features, np.full(20, -1), ["a", "b"], train.paths, source="u.npz")
    with pytest.raises(ValueError, match="u.npz have no labels"):
        fewshot_curve(unlabelled, test, [5], repeats=1)
    with pytest.raises(ValueError, match="larger than every class"):
        fewshot_curve(train, test, [50], repeats=1)
    with pytest.raises(ValueError, match="unknown classifier"):
        fewshot_curve(train, test, [5], repeats=1, classifiers=["rf"])
    narrow = _feats("ab", [5, 5], c[:, :4], dim=4)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fewshot_curve(train, narrow, [5], repeats=1)
    ev = fewshot_curve(train, test, [50], repeats=2, allow_saturated=True, classifiers=["knn"])
    assert "exceeds every class" in ev.notes[0]


def test_unconverged_fits_are_recorded_not_printed(monkeypatch):
    # max_iter=1 forces the ConvergenceWarning: whether lbfgs converges on given data depends on
    # the scipy release, so the test must not rely on it
    monkeypatch.setattr(protocols, "classifier", lambda *a, **k: LogisticRegression(max_iter=1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30))
    y = rng.integers(0, 4, 200)
    feats = Features(x.astype(np.float32), y, list("abcd"), [str(i) for i in range(200)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = fewshot_curve(
            feats,
            feats,
            [100],
            repeats=1,
            preset="sklearn-default",
            classifiers=["lr"],
            allow_saturated=True,
        )
    assert not ev.runs[0].converged
    assert "without converging in 1 of 1 fits" in ev.notes[-1]


@pytest.mark.parametrize("name", ["svm", "lr"])
def test_probability_masking_picks_best_allowed_class(name):
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [8.0, 0.0]])  # class 2 sits next to class 1
    y = np.repeat([0, 1, 2], 30)
    x = centres[y] + rng.normal(scale=0.5, size=(90, 2))
    probe = centres[[2]] + rng.normal(scale=0.2, size=(20, 2))
    plain = _fit_predict(x, y, probe, [name], "paper-code", None)[0][0]
    masked = _fit_predict(x, y, probe, [name], "paper-code", np.array([True, True, False]))[0][0]
    assert (plain == 2).mean() > 0.9
    assert np.all(masked == 1)


def test_direct_transfer_masks_maps_and_reports_superclasses():
    src_names = ["BLA", "MYB", "NGB", "NGS", "PMO"]
    c = _centres(5)
    source = _feats(src_names, [30] * 5, c)
    # target matek_bm subset: NGB/NGS form the neutrophil superclass; PMO+MYB the IG one
    tgt_names = ["MYB", "NGB", "NGS", "PMO"]
    target = _feats(tgt_names, [8] * 4, c[1:], seed=4)
    ev = direct_transfer(
        source, target, "matek_bm", "matek_bm", n_per_class=10, repeats=2, classifiers=["svm"]
    )
    assert ev.class_names == tgt_names
    assert set(ev.superclasses) == {"neutrophil", "immature granulocyte"}
    run = ev.runs[0]
    assert run.confusion.sum() == 32 and run.n_train == 50
    assert ev.superclass_sensitivities(run)["neutrophil"] >= ev.sensitivities(run)[1] - 1e-12
    # Acevedo target: BLA is masked, NGB/NGS both count as "neutrophil"; platelet not scored
    acev = _feats(["ig", "neutrophil", "platelet"], [8, 8, 8], c[[1, 3, 0]], seed=5)
    ev = direct_transfer(source, acev, "matek_bm", "acevedo", n_per_class=10, repeats=2)
    assert ev.class_names == ["ig", "neutrophil"] and ev.superclasses == {}
    assert any("platelet" in n for n in ev.notes) and any("BLA" in n for n in ev.notes)
    assert all(ev.balanced_accuracy(r) > 0.9 for r in ev.runs)
    with pytest.raises(ValueError, match="must be >= 1"):
        direct_transfer(source, acev, "matek_bm", "acevedo", n_per_class=0)
