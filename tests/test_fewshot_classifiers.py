import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.svm import SVC

from cellssl_jax.fewshot import classifiers
from cellssl_jax.fewshot.classifiers import FastSVC, classifier, pipeline


def _data(n=300, d=20, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 0.4  # overlapping classes: many support vectors
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize(
    "kwargs", [{}, {"class_weight": "balanced"}, {"gamma": 0.05, "C": 3.0}, {"gamma": "auto"}]
)
def test_fast_svc_predicts_exactly_like_svc(kwargs, monkeypatch):
    x, y = _data()
    test, _ = _data(n=500, seed=1)
    monkeypatch.setattr(classifiers, "PREDICT_CHUNK", 128)  # exercise the chunking
    fast, ref = FastSVC(**kwargs).fit(x, y), SVC(**kwargs).fit(x, y)
    assert np.array_equal(fast.predict(test), ref.predict(test))
    assert len(fast.support_) > 100


def test_fast_svc_validates_inputs_like_svc():
    x, y = _data()
    with pytest.raises(NotFittedError):
        FastSVC().predict(x)
    fast = FastSVC().fit(x, y)
    with pytest.raises(ValueError, match="X has 19 features, but FastSVC is expecting 20"):
        fast.predict(x[:, :19])
    with pytest.raises(ValueError, match="NaN"):
        fast.predict(np.full_like(x[:2], np.nan))


def test_presets_and_calibrated_probabilities_are_warning_free():
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for preset in classifiers.PRESETS:
            for name in classifiers.CLASSIFIERS:
                for probability in classifiers.PROBABILITIES:
                    model = pipeline(name, preset, probability, labels=y).fit(x, y)
                    proba = model.predict_proba(x[:10])
                    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    svc = classifier("svm", "paper-code")
    assert svc.C == 1.0 and svc.class_weight == "balanced"
    lr = classifier("lr", "paper-code")
    assert (lr.C, lr.class_weight, lr.max_iter) == (2.5, "balanced", 10000)
    assert classifier("knn", "paper-code").get_params()["weights"] == "distance"
    assert classifier("lr", "sklearn-default").C == 1.0


def test_bad_names_and_tiny_classes():
    with pytest.raises(ValueError, match="unknown classifier"):
        classifier("rf", "paper-code")
    with pytest.raises(ValueError, match="unknown preset"):
        classifier("svm", "paper")
    with pytest.raises(ValueError, match="at least 2"):
        classifier("svm", "paper-code", probability="calibrated", labels=np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="unknown probability 'platt'"):
        classifier("svm", "paper-code", probability="platt")
    with pytest.raises(ValueError, match="unknown prediction rule 'max'"):
        classifiers.check_names(["svm"], "paper-code", "max")


def test_libsvm_probabilities_are_svc_probability_true():
    """The paper-code SVM probabilities are scikit-learn's SVC(probability=True) ones (libsvm's
    pairwise coupling), seeded; their argmax is a different rule from SVC.predict's votes."""
    x, y = _data(n=200)
    test, _ = _data(n=400, seed=1)
    ours = classifier("svm", "paper-code", probability="libsvm").fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True), sklearn 1.9
        ref = SVC(C=1.0, class_weight="balanced", probability=True, random_state=0).fit(x, y)
    np.testing.assert_array_equal(ours.predict_proba(test), ref.predict_proba(test))
    np.testing.assert_array_equal(ours.predict(test), ref.predict(test))  # votes, as libsvm
    by_proba = ref.classes_[ref.predict_proba(test).argmax(axis=1)]
    assert 0 < (by_proba != ref.predict(test)).sum() < 0.2 * len(test)  # close, not the same


def test_protocol_rule_is_argmax_proba_or_votes():
    from cellssl_jax.fewshot.features import Features
    from cellssl_jax.fewshot.protocols import _fit_predict, fewshot_curve
    from cellssl_jax.fewshot.report import summarise

    x, y = _data(n=200)
    test, _ = _data(n=400, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = SVC(probability=True, random_state=0).fit(x, y)  # sklearn-default: no preprocessing
    ((by_proba, _),) = _fit_predict(x, y, test, ["svm"], "sklearn-default", None, "proba")
    ((by_vote, _),) = _fit_predict(x, y, test, ["svm"], "sklearn-default", None, "vote")
    np.testing.assert_array_equal(by_proba, ref.classes_[ref.predict_proba(test).argmax(axis=1)])
    np.testing.assert_array_equal(by_vote, ref.predict(test))
    ((default, _),) = _fit_predict(x, y, test, ["svm"], "sklearn-default", None)
    np.testing.assert_array_equal(default, by_vote)
    for name in ("lr", "knn"):  # their predict is already the argmax of their probabilities
        ((a, _),) = _fit_predict(x, y, test, [name], "paper-code", None, "proba")
        ((b, _),) = _fit_predict(x, y, test, [name], "paper-code", None, "vote")
        np.testing.assert_array_equal(a, b)

    feats = Features(x, y, list("abcde"), [str(i) for i in range(len(y))])
    for preset, rule in classifiers.PRESET_RULE.items():
        ev = fewshot_curve(feats, feats, [5], ["svm"], preset, repeats=1)
        assert ev.rule == rule and summarise(ev)[0]["rule"] == rule
    with pytest.raises(ValueError, match="unknown prediction rule"):
        fewshot_curve(feats, feats, [5], ["svm"], repeats=1, rule="votes")
