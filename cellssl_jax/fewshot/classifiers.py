"""The paper's lightweight classifiers, in two presets.

- `paper-code` (the published code): PowerTransformer -> PCA -> SVC(C=1, balanced) /
  LogisticRegression(C=2.5, balanced, max_iter=10000) / KNN(k=3, distance-weighted).
- `sklearn-default` (the paper's text, "scikit-learn default hyper-parameters"): the three
  classifiers with defaults on the raw features, no preprocessing.

`YeoJohnson` is scikit-learn's `PowerTransformer()` with all features fitted at once (same
likelihood, same bounds; about 100x faster on few-shot draws, see `power.py`).
The preprocessing is a separate step so that a protocol can fit it once per labelled draw and
share it between the classifiers (identical results, fewer fits). SVC probabilities come from
`CalibratedClassifierCV(SVC, ensemble=False)` (sigmoid/Platt, like libsvm's), because
scikit-learn 1.9 deprecates `SVC(probability=True)`; they are only built when asked for, since
the few-shot curve only needs `predict` (SVC's decision function, as the original code used).
`FastSVC` is SVC with a BLAS `predict` (identical predictions, tested).
"""

from __future__ import annotations

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
CALIBRATION_FOLDS = 5


class FastSVC(SVC):
    """SVC whose `predict` evaluates the RBF kernel with BLAS instead of libsvm's loops.

    Same one-vs-one decision values (to ~1e-14) and the same voting as libsvm (a pair's
    first class wins when its value is > 0; the first class with most votes is predicted),
    about 6x faster on thousands of test cells. Fitting is plain libsvm.
    """

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


def check_names(classifiers: list[str], preset: str) -> None:
    """Raise ValueError naming any unknown classifier or preset."""
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"unknown classifier {unknown}; choose from {', '.join(CLASSIFIERS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")


def preprocessor(preset: str) -> TransformerMixin | None:
    """The feature transform fitted before every classifier of `preset` (None: raw features)."""
    check_names([], preset)
    if preset == "paper-code":
        return make_pipeline(YeoJohnson(), PCA())
    return None


def classifier(
    name: str, preset: str, probability: bool = False, labels: np.ndarray | None = None
) -> BaseEstimator | ClassifierMixin:
    """An unfitted classifier. `probability=True` makes SVC calibrated (needs `labels` to fit)."""
    check_names([name], preset)
    paper = preset == "paper-code"
    if name == "lr":
        if paper:
            return LogisticRegression(C=2.5, class_weight="balanced", max_iter=10000)
        return LogisticRegression()
    if name == "knn":
        return KNeighborsClassifier(3, weights="distance") if paper else KNeighborsClassifier()
    svc = FastSVC(C=1.0, class_weight="balanced") if paper else FastSVC()
    if not probability:
        return svc
    if labels is None:
        raise ValueError("a calibrated SVC needs the training labels to choose its folds")
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    if smallest < 2:
        raise ValueError("SVC probabilities need at least 2 labelled cells in every class")
    folds = StratifiedKFold(min(CALIBRATION_FOLDS, smallest))
    return CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)


def pipeline(
    name: str, preset: str, probability: bool = False, labels: np.ndarray | None = None
) -> Pipeline:
    """Preprocessing + classifier as one scikit-learn Pipeline (for fitting a single model)."""
    steps = [preprocessor(preset), classifier(name, preset, probability, labels)]
    return make_pipeline(*[s for s in steps if s is not None])
