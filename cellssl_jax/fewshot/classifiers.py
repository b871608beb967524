"""The paper's lightweight classifiers, in two presets, and the rule that turns them into labels.

- `paper-code` (the published code): PowerTransformer -> PCA -> SVC(C=1, balanced) /
  LogisticRegression(C=2.5, balanced, max_iter=10000) / KNN(k=3, distance-weighted).
- `sklearn-default` (the paper's text, "scikit-learn default hyper-parameters"): the three
  classifiers with defaults on the raw features, no preprocessing.

Prediction rules (`RULES`): "proba" predicts the argmax of `predict_proba`, as the paper's code
does for every classifier (sparsam reproducability/reproduce_results.py, `fit_classifier`:
`np.argmax(classifier_pipeline.predict_proba(test_features))`, with
`SVC(probability=True, ...)` from reproducability/parameter.py), so the SVM's labels come from
libsvm's probabilities: Platt sigmoids fitted by an internal 5-fold cross-validation per class
pair, then pairwise coupling. "vote" is `predict`: one-vs-one voting for the SVM (LR and KNN
give the same labels under both rules). `paper-code` defaults to "proba", `sklearn-default`
to "vote". With few cells per class the two SVM rules differ a lot (docs/EVALUATION.md).

`YeoJohnson` is scikit-learn's `PowerTransformer()` with all features fitted at once (same
likelihood, same bounds; about 100x faster on few-shot draws, see `power.py`), its output
bounded at 10 fitted standard deviations (where scikit-learn's extrapolation overflows).
The preprocessing is a separate step so that a protocol can fit it once per labelled draw and
share it between the classifiers (identical results, fewer fits). Where probabilities are used
for anything but the paper's rule (transfer masking, `classify`), the SVM's come from
`CalibratedClassifierCV(SVC, ensemble=False)` (sigmoid/Platt, like libsvm's, without the
internal pairwise cross-validation). `FastSVC` is SVC with a BLAS `predict` (identical
predictions, tested).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from cellssl_jax.fewshot.power import YeoJohnson

CLASSIFIERS = ("svm", "lr", "knn")
PREDICT_CHUNK = 2048  # test rows per kernel block in FastSVC.predict
PRESETS = ("paper-code", "sklearn-default")
RULES = ("proba", "vote")
PRESET_RULE = {"paper-code": "proba", "sklearn-default": "vote"}
PROBABILITIES = ("calibrated", "libsvm")  # how an SVM gets predict_proba
CALIBRATION_FOLDS = 5


class FastSVC(SVC):
    """SVC whose `predict` evaluates the RBF kernel with BLAS instead of libsvm's loops.

    Same one-vs-one decision values (to ~1e-14) and the same voting as libsvm (a pair's
    first class wins when its value is > 0; the first class with most votes is predicted),
    about 6x faster on thousands of test cells. Fitting is plain libsvm; with
    `probability=True` it keeps libsvm's probabilities without scikit-learn 1.9's deprecation
    warning (they are what the paper's code used; scikit-learn removes them in 1.11).
    """

    def fit(self, X, y, sample_weight=None) -> FastSVC:  # noqa: N803 (scikit-learn's name)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "The `probability` parameter was deprecated", FutureWarning
            )
            return super().fit(X, y, sample_weight)

    def predict(self, X) -> np.ndarray:  # noqa: N803 (scikit-learn's argument name)
        check_is_fitted(self)
        if self.kernel != "rbf" or self.break_ties or len(self.classes_) < 2:
            return super().predict(X)
        # scikit-learn's own checks (feature count, finite values), which BLAS would not make
        x = validate_data(self, X, dtype=np.float64, reset=False)
        return np.concatenate(
            [self._vote(x[i : i + PREDICT_CHUNK]) for i in range(0, len(x), PREDICT_CHUNK)]
        )

    def _vote(self, x: np.ndarray) -> np.ndarray:
        sv = self.support_vectors_
        sq = (x * x).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * x @ sv.T
        kernel = np.exp(-self._gamma * np.maximum(sq, 0.0))  # the gamma libsvm was fitted with
        bounds = np.concatenate([[0], np.cumsum(self.n_support_)])
        n_classes = len(self.classes_)
        votes = np.zeros((len(x), n_classes), dtype=np.int64)
        pair = 0
        for i in range(n_classes):
            si = slice(bounds[i], bounds[i + 1])
            for j in range(i + 1, n_classes):
                sj = slice(bounds[j], bounds[j + 1])
                dec = (
                    kernel[:, si] @ self.dual_coef_[j - 1, si]
                    + kernel[:, sj] @ self.dual_coef_[i, sj]
                    + self.intercept_[pair]
                )
                votes[:, i] += dec > 0
                votes[:, j] += dec <= 0
                pair += 1
        return self.classes_[np.argmax(votes, axis=1)]


def check_names(classifiers: list[str], preset: str, rule: str | None = None) -> None:
    """Raise ValueError naming any unknown classifier, preset or rule."""
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"unknown classifier {unknown}; choose from {', '.join(CLASSIFIERS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if rule is not None and rule not in RULES:
        raise ValueError(f"unknown prediction rule {rule!r}; choose from {', '.join(RULES)}")


def preprocessor(preset: str) -> TransformerMixin | None:
    """The feature transform fitted before every classifier of `preset` (None: raw features)."""
    check_names([], preset)
    if preset == "paper-code":
        return make_pipeline(YeoJohnson(), PCA())
    return None


def classifier(
    name: str,
    preset: str,
    probability: str | None = None,
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> BaseEstimator | ClassifierMixin:
    """An unfitted classifier. `probability` gives an SVM `predict_proba`: "calibrated"
    (CalibratedClassifierCV; needs `labels` to choose its folds) or "libsvm" (the paper's
    code: libsvm's pairwise-coupled Platt probabilities; `seed` shuffles libsvm's internal
    cross-validation, which the paper's code left unseeded). LR and KNN ignore both."""
    check_names([name], preset)
    if probability is not None and probability not in PROBABILITIES:
        raise ValueError(f"unknown probability {probability!r}; choose from {PROBABILITIES}")
    paper = preset == "paper-code"
    if name == "lr":
        if paper:
            return LogisticRegression(C=2.5, class_weight="balanced", max_iter=10000)
        return LogisticRegression()
    if name == "knn":
        return KNeighborsClassifier(3, weights="distance") if paper else KNeighborsClassifier()
    svc = FastSVC(C=1.0, class_weight="balanced") if paper else FastSVC()
    if probability is None:
        return svc
    if probability == "libsvm":
        return svc.set_params(probability=True, random_state=seed)
    if labels is None:
        raise ValueError("a calibrated SVC needs the training labels to choose its folds")
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    if smallest < 2:
        raise ValueError("SVC probabilities need at least 2 labelled cells in every class")
    folds = StratifiedKFold(min(CALIBRATION_FOLDS, smallest))
    return CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)


def pipeline(
    name: str, preset: str, probability: str | None = None, labels: np.ndarray | None = None
) -> Pipeline:
    """Preprocessing + classifier as one scikit-learn Pipeline (for fitting a single model)."""
    steps = [preprocessor(preset), classifier(name, preset, probability, labels)]
    return make_pipeline(*[s for s in steps if s is not None])
