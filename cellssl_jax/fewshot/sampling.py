"""Seeded stratified sampling: the train/test split and the labelled draws of each repetition.

Everything is a function of explicit seeds and walks the classes in label order, so a run is
reproducible and independent of worker count (the original code left the first repetition
unseeded and the class order to a set).
"""

from __future__ import annotations

import numpy as np

SPLIT_STREAM = 0
DRAW_STREAM = 1


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for (seed, *keys), e.g. (seed, DRAW_STREAM, n, repetition)."""
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])


def stratified_split(
    labels: np.ndarray, train_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with `train_fraction` of every class in train (rounded).

    A class of >= 2 cells keeps at least one cell on each side; a single-cell class goes to
    train. Only labelled rows (label >= 0) are used. Both index arrays are sorted.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must be in (0, 1), got {train_fraction}")
    rng = rng_for(seed, SPLIT_STREAM)
    train, test = [], []
    for c in np.unique(labels[labels >= 0]):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(train_fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = len(idx)
        train.append(idx[:k])
        test.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def sample_per_class(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `n` random cells of every class (all of a class that has fewer).

    Classes are visited in label order; rows labelled -1 are never drawn.
    """
    if n < 1:
        raise ValueError(f"cells per class must be >= 1, got {n}")
    picks = []
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        picks.append(idx if len(idx) <= n else rng.choice(idx, size=n, replace=False))
    return np.sort(np.concatenate(picks))
