"""The one train/test rule: a stratified 70/30 split seeded by each cell's id (sha256 of its bytes).

The TFDS builders split with it, `evaluate --split` splits a features file with it, and the
scripts that pretrain the bundled encoder or choose defaults carve their parts with it, so a cell
one of them trained on can never land in another's test part. Plain numpy (no JAX, no TFDS):
the few-shot side imports it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SPLIT_SEED = 20250101  # fixed: the same train/test assignment on every machine
VALIDATION_SEED = 20251130  # carves the validation part out of the train part, as stably
TRAIN_FRACTION = 0.7


def file_id(path: str | Path) -> str:
    """A cell's id: the sha256 of its file bytes (what the builders store as `id`)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stratified_split(
    ids: Sequence[str], labels: np.ndarray, seed: int, train_fraction: float = TRAIN_FRACTION
) -> np.ndarray:
    """Boolean train mask: per class, a seeded permutation of the sorted ids, first 70 % train.

    Depends only on the set of (id, label) pairs and the seed, not on file order or machine.
    A class of >= 2 cells keeps one on each side (never binding at 0.7); one cell goes to train.
    Other fractions cut the same permutations, so a larger fraction's test part lies inside the
    0.7 test part.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must be in (0, 1), got {train_fraction}")
    labels = np.asarray(labels)
    ids_arr = np.asarray(ids)
    train = np.zeros(len(ids_arr), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(ids_arr[members], kind="stable")]
        order = np.random.default_rng([seed, int(c) + 1]).permutation(len(members))
        n_train = int(np.floor(train_fraction * len(members) + 0.5))
        if len(members) >= 2:
            n_train = min(max(n_train, 1), len(members) - 1)
        train[members[order[:n_train]]] = True
    return train


def three_way_split(ids: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Per example "fit", "validation" or "test": the builders' 70/30 train/test split, then the
    same id-seeded rule (seed VALIDATION_SEED) splitting the train part 70/30 into fit and
    validation. Choices (recipe, checkpoint, read size, default features) are made on validation;
    the test part reports once."""
    ids_arr, labels = np.asarray(ids), np.asarray(labels)
    train = stratified_split(ids_arr, labels, SPLIT_SEED)
    parts = np.where(train, "fit", "test").astype(object)
    inner = np.flatnonzero(train)
    fit = stratified_split(ids_arr[inner], labels[inner], VALIDATION_SEED)
    parts[inner[~fit]] = "validation"
    return parts.astype(str)
