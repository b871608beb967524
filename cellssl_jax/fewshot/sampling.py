"""Seeded stratified sampling: the labelled draws of each repetition.

The train/test split is the builders' id-seeded one (`cellssl_jax/splits.py`).

Everything is a function of explicit seeds and walks the classes in label order, so a run is
reproducible and independent of worker count (the original code left the first repetition
unseeded and the class order to a set).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellssl_jax.splits import file_id, three_way_split
from cellssl_jax.vocab import builder_labels

DRAW_STREAM = 1


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for (seed, *keys), e.g. (seed, DRAW_STREAM, n, repetition)."""
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])


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


def builder_parts(paths: Sequence[str | Path], labels: np.ndarray,
                  class_names: Sequence[str]) -> np.ndarray:
    """Each labelled cell's part, "fit" / "validation" / "test", as the builders split it: ids
    are the files' sha256, labels in the builder's numbering (`vocab.builder_labels`)."""
    numbering = np.asarray(builder_labels(class_names))
    return three_way_split([file_id(p) for p in paths], numbering[np.asarray(labels)])
