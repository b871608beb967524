"""The paper's evaluation protocols on features: the few-shot curve and direct transfer.

One unit of work is one labelled draw (n cells per class, seeded by (seed, n, repetition)):
the preprocessing is fitted once on it and shared by every classifier, and each classifier's
test confusion matrix is kept. Draws run in parallel with joblib; identical draws (n at least
as large as every class, so each class gives all its cells) are fitted once and shared, which
changes no number since every fit is deterministic given its (sorted) training rows.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from tqdm import tqdm

from cellssl_jax.fewshot import classes as vocab
from cellssl_jax.fewshot.classifiers import PRESET_RULE, check_names, classifier, preprocessor
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.metrics import (
    balanced_accuracy,
    confusion,
    group_sensitivity,
    sensitivities,
)
from cellssl_jax.fewshot.sampling import DRAW_STREAM, rng_for, sample_per_class

log = logging.getLogger(__name__)

DEFAULT_N = (5, 25, 50, 100, 250, 500, 1000, 2000)


@dataclass(frozen=True)
class Run:
    """One classifier fitted on one labelled draw and scored on the test cells."""

    classifier: str
    n_per_class: int
    repetition: int
    n_train: int
    confusion: np.ndarray  # [C, C] counts over Evaluation.class_names (row: true class)
    converged: bool = True  # False: the solver stopped at max_iter (ConvergenceWarning)


@dataclass
class Evaluation:
    """All runs of a protocol plus what is needed to report them."""

    protocol: str  # "fewshot" or "transfer"
    preset: str
    seed: int
    class_names: list[str]  # scored classes, the rows/columns of every confusion matrix
    runs: list[Run]
    superclasses: dict[str, list[int]] = field(default_factory=dict)  # reported, not averaged
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    rule: str = ""  # how labels were predicted (fewshot: classifiers.RULES)
    dataset: str = ""  # what the cells are, for titles ("acevedo", "matek_bm -> matek_blood")
    features: str = ""  # the features' name (encoder, colour histograms or both)
    train_cells: int = 0  # labelled cells the draws are taken from
    test_cells: int = 0  # cells scored in every run

    def sensitivities(self, run: Run) -> np.ndarray:
        return sensitivities(run.confusion)

    def balanced_accuracy(self, run: Run) -> float:
        return balanced_accuracy(sensitivities(run.confusion))

    def superclass_sensitivities(self, run: Run) -> dict[str, float]:
        return {s: group_sensitivity(run.confusion, m) for s, m in self.superclasses.items()}


def require_labels(feats: Features, role: str) -> None:
    if not feats.labelled.any():
        raise ValueError(
            f"{role} features {feats.source} have no labels (every label is -1): this protocol "
            "needs labelled cells; extract from a folder with one sub-folder per class"
        )


def _require_same_dim(a: Features, b: Features) -> None:
    if a.dim != b.dim:
        raise ValueError(
            f"feature dimensions differ: {a.source} has {a.dim}-d features, {b.source} has "
            f"{b.dim}-d (extract both with the same encoder)"
        )


def _draws(
    labels: np.ndarray, n_values: Sequence[int], repeats: int, seed: int
) -> tuple[list[np.ndarray], dict[tuple[int, int], int]]:
    """Unique labelled draws and, for every (n, repetition), the index of its draw."""
    unique: list[np.ndarray] = []
    seen: dict[bytes, int] = {}
    which: dict[tuple[int, int], int] = {}
    for n in n_values:
        for rep in range(repeats):
            idx = sample_per_class(labels, n, rng_for(seed, DRAW_STREAM, n, rep))
            key = idx.tobytes()
            if key not in seen:
                seen[key] = len(unique)
                unique.append(idx)
            which[(n, rep)] = seen[key]
    return unique, which


def _fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    classifiers: Sequence[str],
    preset: str,
    mask: np.ndarray | None,
    rule: str | None = None,
    libsvm_seed: int = 0,
) -> list[tuple[np.ndarray, bool]]:
    """(predicted test labels, converged) per classifier, with one shared preprocessing fit.

    With `mask` (bool per training label), predictions are the argmax of the (calibrated)
    probabilities restricted to the allowed labels (direct transfer). Otherwise `rule`
    (default: the preset's) decides: "proba" is the argmax of `predict_proba` (libsvm's
    probabilities for the SVM, as the paper's code), "vote" is `predict`. A ConvergenceWarning
    (LR at scikit-learn's default max_iter) is recorded, not printed.
    """
    rule = rule or PRESET_RULE[preset]
    pre = preprocessor(preset)
    if pre is not None:
        x_train = pre.fit_transform(x_train)
        x_test = pre.transform(x_test)
    probability = "calibrated" if mask is not None else ("libsvm" if rule == "proba" else None)
    out = []
    for name in classifiers:
        model = classifier(name, preset, probability, y_train, libsvm_seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x_train, y_train)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if probability is None:
            out.append((model.predict(x_test), converged))
            continue
        proba = model.predict_proba(x_test)
        if mask is not None:
            proba = np.where(mask[model.classes_][None, :], proba, -np.inf)
        out.append((model.classes_[np.argmax(proba, axis=1)], converged))
    return out


def _score_draw(
    idx: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classifiers: Sequence[str],
    preset: str,
    mask: np.ndarray | None,
    to_row: np.ndarray,
    n_rows: int,
    rule: str | None = None,
) -> list[tuple[np.ndarray, bool]]:
    """(confusion, converged) per classifier for the draw `idx`; `to_row` maps predictions.

    libsvm's internal cross-validation (the "proba" rule) is seeded by the draw: the paper's
    code left it unseeded, and one fixed seed would reuse one fold pattern for every draw (the
    rows come sorted by class), which at 5 cells/class moves the mean by ~20 points
    (docs/EVALUATION.md).
    """
    seed = zlib.crc32(idx.tobytes())
    preds = _fit_predict(x_train[idx], y_train[idx], x_test, classifiers, preset, mask, rule, seed)
    return [(confusion(y_test, to_row[p], n_rows), ok) for p, ok in preds]


def _run_draws(
    draws: list[np.ndarray], jobs: int, desc: str, **arrays
) -> list[list[tuple[np.ndarray, bool]]]:
    """Score every draw in parallel (joblib memory-maps the shared arrays), with a progress bar."""
    tasks = (delayed(_score_draw)(d, **arrays) for d in draws)
    results = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    return list(tqdm(results, total=len(draws), desc=desc, unit="draw", disable=None))  # tty only


def _unconverged(runs: list[Run]) -> list[str]:
    """A note per classifier whose solver hit max_iter in some fits."""
    notes = []
    for name in dict.fromkeys(r.classifier for r in runs):
        bad = [r for r in runs if r.classifier == name and not r.converged]
        if bad:
            notes.append(
                f"{name}: the solver stopped at max_iter without converging in {len(bad)} of "
                f"{sum(r.classifier == name for r in runs)} fits (ConvergenceWarning)"
            )
    return notes


def _check_n(labels: np.ndarray, n_values: Sequence[int], allow_saturated: bool) -> list[str]:
    largest = int(np.bincount(labels[labels >= 0]).max())
    over = [n for n in n_values if n > largest]
    if over and not allow_saturated:
        raise ValueError(
            f"n = {', '.join(map(str, over))} cells per class is larger than every class of the "
            f"training cells (largest class: {largest}); use n <= {largest}"
        )
    if over:
        return [
            f"n = {', '.join(map(str, over))} exceeds every class (largest: {largest} training "
            "cells): each class contributes all its cells, so these repetitions are identical"
        ]
    return []


def fewshot_curve(
    train: Features,
    test: Features,
    n_values: Sequence[int] = DEFAULT_N,
    classifiers: Sequence[str] = ("svm", "lr", "knn"),
    preset: str = "paper-code",
    repeats: int = 100,
    seed: int = 0,
    jobs: int = 1,
    allow_saturated: bool = False,
    rule: str | None = None,
) -> Evaluation:
    """Domain adaptation curve: n labelled train cells per class -> scores on the test cells.

    `test` may use a different class order (matched by name); its classes must all exist in
    `train`. `allow_saturated` accepts n larger than every class (all cells every time).
    `rule`: how labels are predicted (classifiers.RULES; default: the preset's).
    """
    check_names(list(classifiers), preset, rule)
    rule = rule or PRESET_RULE[preset]
    require_labels(train, "training")
    require_labels(test, "test")
    _require_same_dim(train, test)
    missing = sorted(set(test.class_names) - set(train.class_names))
    if missing:
        raise ValueError(f"test classes {missing} are not among the training classes")
    if repeats < 1 or any(n < 1 for n in n_values):
        raise ValueError("repeats and every n must be >= 1")
    names = train.class_names
    remap = np.array([names.index(c) for c in test.class_names] + [-1], dtype=np.int64)
    tr = np.flatnonzero(train.labelled)
    te = np.flatnonzero(test.labelled)
    x_train, y_train = train.features[tr], train.labels[tr]
    x_test, y_test = test.features[te], remap[test.labels[te]]
    notes = _check_n(y_train, n_values, allow_saturated)
    draws, which = _draws(y_train, n_values, repeats, seed)
    log.info("%d draws (%d distinct) x %d classifiers", len(which), len(draws), len(classifiers))

    confs = _run_draws(
        draws,
        jobs,
        "fewshot",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classifiers=list(classifiers),
        preset=preset,
        mask=None,
        to_row=np.arange(len(names)),
        n_rows=len(names),
        rule=rule,
    )
    runs = [
        Run(name, n, rep, len(draws[d]), *confs[d][k])
        for k, name in enumerate(classifiers)
        for n in n_values
        for rep in range(repeats)
        for d in [which[(n, rep)]]
    ]
    notes += _unconverged(runs)
    return Evaluation(
        "fewshot", preset, seed, list(names), runs, notes=notes, rule=rule,
        features=train.encoder, train_cells=len(tr), test_cells=len(te),
    )


def direct_transfer(
    source: Features,
    target: Features,
    source_dataset: str,
    target_dataset: str,
    n_per_class: int = 250,
    classifiers: Sequence[str] = ("svm", "lr", "knn"),
    preset: str = "paper-code",
    repeats: int = 100,
    seed: int = 0,
    jobs: int = 1,
    allow_saturated: bool = False,
) -> Evaluation:
    """Fit on n source cells per class, predict target cells with probability masking.

    The argmax runs over the source classes that count as a target class (`classes.transfer_map`),
    the winner is mapped to its target class, and only target classes that can be predicted
    are scored. Superclass sensitivities (target splits neutrophils / immature granulocytes)
    are reported beside the classes and left out of balanced accuracy.
    """
    check_names(list(classifiers), preset)
    if repeats < 1 or n_per_class < 1:
        raise ValueError("repeats and n_per_class must be >= 1")
    require_labels(source, "source")
    require_labels(target, "target")
    _require_same_dim(source, target)
    mapping = vocab.transfer_map(
        source_dataset, source.class_names, target_dataset, target.class_names
    )
    scored = sorted({t for t in mapping if t is not None})
    if not scored:
        raise ValueError(
            f"no {source_dataset} class {source.class_names} corresponds to a {target_dataset} "
            f"class {target.class_names}"
        )
    to_scored = {t: i for i, t in enumerate(scored)}
    names = [target.class_names[t] for t in scored]
    src_to_row = np.array([to_scored[t] if t is not None else -1 for t in mapping])
    mask = src_to_row >= 0

    tr = np.flatnonzero(source.labelled)
    x_src, y_src = source.features[tr], source.labels[tr]
    te = np.flatnonzero(np.isin(target.labels, scored))
    x_tgt = target.features[te]
    y_tgt = np.array([to_scored[t] for t in target.labels[te]], dtype=np.int64)
    dropped = sorted(
        set(target.class_names[t] for t in target.labels[target.labelled]) - set(names)
    )
    notes = _check_n(y_src, [n_per_class], allow_saturated)
    if dropped:
        notes.append(
            f"target classes without a {source_dataset} counterpart, not scored: {dropped}"
        )
    unused = [c for c, m in zip(source.class_names, mask, strict=True) if not m]
    if unused:
        notes.append(f"source classes masked out (no {target_dataset} counterpart): {unused}")
    draws, which = _draws(y_src, [n_per_class], repeats, seed)

    confs = _run_draws(
        draws,
        jobs,
        "transfer",
        x_train=x_src,
        y_train=y_src,
        x_test=x_tgt,
        y_test=y_tgt,
        classifiers=list(classifiers),
        preset=preset,
        mask=mask,
        to_row=src_to_row,
        n_rows=len(names),
    )
    runs = [
        Run(
            name,
            n_per_class,
            rep,
            len(draws[which[(n_per_class, rep)]]),
            *confs[which[(n_per_class, rep)]][k],
        )
        for k, name in enumerate(classifiers)
        for rep in range(repeats)
    ]
    groups = vocab.superclass_groups(target_dataset, names)
    notes += _unconverged(runs)
    return Evaluation(
        "transfer", preset, seed, names, runs, superclasses=groups, notes=notes,
        rule="masked argmax of calibrated probabilities",
        dataset=f"{source_dataset} -> {target_dataset}", features=source.encoder,
        train_cells=len(tr), test_cells=len(te),
    )
