"""The k-NN probe: how well a feature separates classes without fitting anything but a vote.

DINO's own yardstick (cosine k-NN with distance weights, k = 20); here as stratified k-fold
cross-validated balanced accuracy on one labelled set, so a probe needs no second split.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 20, folds: int = 5,
                 seed: int = 0) -> float:
    """Balanced accuracy of cosine k-NN, predicted for every cell by `folds`-fold CV."""
    feats = features / np.linalg.norm(features, axis=1, keepdims=True)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance")
    pred = cross_val_predict(knn, feats, labels,
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(balanced_accuracy_score(labels, pred))
