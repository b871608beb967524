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

from cellssl_jax.fewshot.power import YeoJohnson

CLASSIFIERS = ("svm", "lr", "knn")
PRESETS = ("paper-code", "sklearn-default")
CALIBRATION_FOLDS = 5


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
    svc = SVC(C=1.0, class_weight="balanced") if paper else SVC()
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
