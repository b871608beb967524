"""Which cells to label first, as a library: k-means or k-center over the cells' features in a
standardised PCA space (the `select` job and the page, cellssl_jax/app, both call `propose`)."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

METHODS = ("kmeans", "kcenter")
SPACE_DIMS = 32  # PCA dimensions of the selection space


def selection_space(features: np.ndarray, dims: int = SPACE_DIMS) -> np.ndarray:
    """Standardised, PCA-reduced features: Euclidean distances then weigh directions by their
    spread among these cells, not by the raw scale of each encoder dimension."""
    x = StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))
    return PCA(min(dims, *x.shape), random_state=0).fit_transform(x)


def kmeans_pick(x: np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """The cell nearest each k-means centre (k = budget)."""
    km = KMeans(n_clusters=budget, n_init=3, random_state=seed).fit(x)
    taken = np.zeros(len(x), bool)
    picks = []
    for centre in km.cluster_centers_:
        order = np.argsort(((x - centre) ** 2).sum(-1), kind="stable")
        pick = int(order[~taken[order]][0])  # nearest not yet taken (ties between centres)
        taken[pick] = True
        picks.append(pick)
    return np.asarray(picks)


def kcenter_pick(x: np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """Greedy k-center: the cell nearest the mean, then repeatedly the cell farthest from all
    chosen ones. Deterministic (`seed` is accepted for a uniform signature)."""
    del seed
    picks = [int(np.argmin(((x - x.mean(0)) ** 2).sum(-1)))]
    nearest = ((x - x[picks[0]]) ** 2).sum(-1)
    while len(picks) < budget:
        picks.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, ((x - x[picks[-1]]) ** 2).sum(-1))
    return np.asarray(picks)


def propose(
    features: np.ndarray, budget: int, method: str = "kmeans", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `budget` distinct cells to label first and how many cells each represents
    (cells whose nearest proposed cell it is, itself included); the cells that stand for the
    most cells come first, so a labeller who stops early has covered the most."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if not 1 <= budget <= len(features):
        raise ValueError(f"budget must be between 1 and the {len(features)} cells, got {budget}")
    x = selection_space(features)
    picks = (kmeans_pick if method == "kmeans" else kcenter_pick)(x, budget, seed)
    # one [N] distance row per proposed cell: no [N, budget, dims] temporary
    nearest = np.argmin([((x - p) ** 2).sum(-1) for p in x[picks]], axis=0)
    represents = np.bincount(nearest, minlength=budget)
    order = np.argsort(-represents, kind="stable")
    return picks[order], represents[order]
