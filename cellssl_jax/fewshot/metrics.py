"""Confusion matrices, per-class sensitivity and balanced accuracy (the paper's metrics)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [C, C]: row = true class, column = predicted class."""
    flat = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def sensitivities(conf: np.ndarray) -> np.ndarray:
    """Per-class sensitivity (recall) from a confusion matrix; NaN for a class with no cells."""
    totals = conf.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(conf) / totals, np.nan)


def group_sensitivity(conf: np.ndarray, members: Sequence[int]) -> float:
    """Sensitivity of a superclass: a member cell is correct if predicted as any member."""
    idx = np.asarray(members)
    total = conf[idx].sum()
    return float(conf[np.ix_(idx, idx)].sum() / total) if total else float("nan")


def balanced_accuracy(
    per_class: Mapping[str, float] | np.ndarray, exclude: Iterable[str] = ()
) -> float:
    """Plain mean of the per-class sensitivities, leaving out `exclude` (superclass rows) and NaN.

    This is how the paper's totals are formed (e.g. Table 3: superclass sensitivities are
    listed but not averaged in).
    """
    if isinstance(per_class, Mapping):
        skip = set(exclude)
        values = np.array([v for k, v in per_class.items() if k not in skip], dtype=np.float64)
    else:
        values = np.asarray(per_class, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("no class with test cells: balanced accuracy is undefined")
    return float(values.mean())
