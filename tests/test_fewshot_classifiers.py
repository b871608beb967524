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
                model = pipeline(name, preset, probability=True, labels=y).fit(x, y)
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
        classifier("svm", "paper-code", probability=True, labels=np.array([0, 0, 1]))
