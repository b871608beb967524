"""Which cells to label next: typical and diverse cells first, then the classifier's doubts.

The library under `select` (and any page that shows "the next batch"): features of every cell,
the cells labelled so far (row indices and classes), a budget -> the proposed rows in labelling
order, each with its reason.

- **No labels yet**: `proposals.propose`, the cell nearest each of k = budget k-means centres
  in the selection space (standardised features, 32 PCA dimensions), ordered by how many cells
  each stands for -- `select`'s rule before labels existed, unchanged.
- **While fewer than `typical_cells` cells are labelled, or fewer than 2 classes** (reason
  "seed"): typical cells of the groups the labels do not cover yet -- k-means with
  k = labelled + batch, the largest clusters holding the fewest labelled cells first, the cell
  nearest each centre (the cold-start rule of TypiClust, Hacohen et al. 2022, with `select`'s
  nearest-centre cell as the typical one).
- **After that**: a share `explore` of the batch stays "seed" (a class never labelled can only
  be found that way); the rest are the cells the classifier is least sure of -- small margin
  between its two most probable classes -- weighted toward the classes with fewer labels
  (weight sum_c p_c (mean labels per class / labels of c) ** `short_power`), spread over the
  feature space by k-means on the `candidates` x batch most doubtful cells, weighted by that
  score, taking the cell nearest each centre (Zhdanov 2019, "Diverse mini-batch active
  learning"). Reason "short class" when the most probable class has fewer labels than the mean
  class, else "uncertain".

The classifier is one function (`Proba`: labelled features, their classes, other features ->
probabilities), so it can follow `classify`'s default; `lr_proba` (the paper-code logistic
regression) is the default. Plain numpy + scikit-learn: no JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from cellssl_jax.fewshot.classifiers import pipeline
from cellssl_jax.proposals import propose, selection_space

REASONS = ("seed", "uncertain", "short class")
# The defaults were set before measuring and not tuned (docs/measurements/2026-12-04_select_next)
TYPICAL_CELLS = 32  # labels before the classifier's doubts lead
EXPLORE = 0.25  # share of each later batch that stays typical + diverse
SHORT_POWER = 1.0  # how strongly doubts are weighted toward classes with fewer labels
CANDIDATES = 10  # doubtful cells considered per proposed cell (diversity within a batch)

Proba = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def lr_proba(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Probabilities [len(x), K] over the K classes in `y_fit` (sorted) from the paper-code
    logistic regression (PowerTransformer -> PCA -> LR, balanced class weights)."""
    return pipeline("lr", "paper-code").fit(x_fit, y_fit).predict_proba(x)


def nearest_free(x: np.ndarray, centres: np.ndarray, free: np.ndarray) -> np.ndarray:
    """For each centre in turn, the nearest row of `x` that is free and not taken by an earlier
    centre (ties between centres never give one cell twice)."""
    free = free.copy()
    picks = []
    for centre in centres:
        order = np.argsort(((x - centre) ** 2).sum(-1), kind="stable")
        pick = int(order[free[order]][0])
        free[pick] = False
        picks.append(pick)
    return np.asarray(picks, dtype=np.int64)


def represented(x: np.ndarray, picks: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How many of the cells `rows` (a mask) have each pick as their nearest pick (a running
    minimum over the picks: memory of one [N] row, whatever the number of picks)."""
    best = np.full(len(x), np.inf)
    nearest = np.zeros(len(x), np.int64)
    for k, p in enumerate(x[picks]):
        d = ((x - p) ** 2).sum(-1)
        closer = d < best  # strict: ties keep the earlier pick, as argmin does
        best[closer], nearest[closer] = d[closer], k
    return np.bincount(nearest[rows], minlength=len(picks))


@dataclass(frozen=True)
class Proposal:
    """The next batch, in labelling order. `index`: rows of the features; `reason`: one of
    REASONS; `represents`: the unlabelled cells (itself included) whose nearest labelled or
    proposed cell it is; `predicted`, `runner_up`: the classifier's two most probable classes
    (-1 for seed cells); `margin`: their probability difference (NaN for seed cells)."""

    index: np.ndarray
    reason: list[str]
    represents: np.ndarray
    predicted: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray

    @classmethod
    def seeds(cls, index: np.ndarray, represents: np.ndarray) -> Proposal:
        """A batch of seed cells only (no classifier)."""
        none, n = np.full(len(index), -1), len(index)
        return cls(index, ["seed"] * n, represents, none, none, np.full(n, np.nan))


def check_labels(n: int, labelled: np.ndarray, classes: np.ndarray) -> None:
    """Labelled rows must be distinct rows of the features, one class >= 0 each."""
    if labelled.shape != classes.shape or labelled.ndim != 1:
        raise ValueError(
            f"{len(labelled)} labelled rows but {len(classes)} classes; give one class per row"
        )
    if len(labelled) and (labelled.min() < 0 or labelled.max() >= n):
        raise ValueError(f"labelled rows must be between 0 and {n - 1}")
    if len(np.unique(labelled)) != len(labelled):
        raise ValueError("a cell is labelled twice")
    if len(classes) and classes.min() < 0:
        raise ValueError("classes must be >= 0")


def next_batch(
    features: np.ndarray,
    labelled: np.ndarray,
    classes: np.ndarray,
    budget: int,
    *,
    proba: Proba = lr_proba,
    typical_cells: int = TYPICAL_CELLS,
    explore: float = EXPLORE,
    short_power: float = SHORT_POWER,
    candidates: int = CANDIDATES,
    seed: int = 0,
) -> Proposal:
    """The next `budget` cells to label among the rows of `features` not in `labelled` (rows
    already labelled, with their `classes`: ints, e.g. indices into a list of class names).
    The rule and its parameters: the module's docstring."""
    features = np.asarray(features, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.int64).reshape(-1)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if features.ndim != 2 or not np.isfinite(features).all():
        raise ValueError(f"features must be a finite 2-D array, got shape {features.shape}")
    check_labels(len(features), labelled, classes)
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be between 0 and 1, got {explore}")
    free = np.ones(len(features), bool)
    free[labelled] = False
    if not 1 <= budget <= free.sum():
        raise ValueError(
            f"budget must be between 1 and the {int(free.sum())} cells not labelled yet, "
            f"got {budget}"
        )
    if len(labelled) == 0:
        return Proposal.seeds(*propose(features, budget, seed=seed))
    x = selection_space(features)
    known = np.unique(classes)
    if len(known) < 2 or len(labelled) < typical_cells:
        n_seed = budget
    else:
        n_seed = int(round(explore * budget))
    seeds = cover(x, labelled, free, n_seed, seed)
    free[seeds] = False
    if n_seed == budget:
        return Proposal.seeds(seeds, coverage(x, seeds, labelled))
    fitted = proba(features[labelled], classes, features)
    doubts = doubtful(x, fitted, classes, free, budget - n_seed, short_power, candidates, seed)
    picks = np.concatenate([seeds, doubts])
    predicted, runner_up, margin = top_two(fitted[picks], known)
    predicted[:n_seed] = runner_up[:n_seed] = -1
    margin[:n_seed] = np.nan
    counts = np.array([np.sum(classes == c) for c in known])
    short = set(known[counts < counts.mean()].tolist())
    reason = ["seed"] * n_seed + [
        "short class" if int(c) in short else "uncertain" for c in predicted[n_seed:]
    ]
    represents = coverage(x, picks, labelled)
    return Proposal(picks, reason, represents, predicted, runner_up, margin)


def coverage(x: np.ndarray, picks: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """For each pick, the unlabelled cells whose nearest labelled-or-proposed cell it is."""
    unlabelled = np.ones(len(x), bool)
    unlabelled[labelled] = False
    return represented(x, np.concatenate([picks, labelled]), unlabelled)[: len(picks)]


def cover(x: np.ndarray, labelled: np.ndarray, free: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` typical cells of the groups the labelled cells cover least: k-means with
    k = labelled + n (at most the cells), clusters ordered by labelled cells in them (fewest
    first) then size (largest first), the free cell nearest each centre."""
    if n == 0:
        return np.zeros(0, np.int64)
    k = min(len(labelled) + n, len(x))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x)
    held = np.bincount(km.labels_[labelled], minlength=k)
    size = np.bincount(km.labels_[free], minlength=k)
    order = np.lexsort((-size, held))  # the last key sorts first
    order = order[size[order] > 0][:n]
    picks = nearest_free(x, km.cluster_centers_[order], free)
    if len(picks) < n:  # fewer non-empty clusters than cells asked for: the farthest free cells
        rest = farthest_free(x, np.concatenate([labelled, picks]), free, n - len(picks), picks)
        picks = np.concatenate([picks, rest])
    return picks


def farthest_free(
    x: np.ndarray, taken: np.ndarray, free: np.ndarray, n: int, exclude: np.ndarray
) -> np.ndarray:
    """Greedy farthest-point cells among the free ones not in `exclude`."""
    free = free.copy()
    free[exclude] = False
    nearest = np.min([((x - p) ** 2).sum(-1) for p in x[taken]], axis=0)
    picks = []
    for _ in range(n):
        pick = int(np.flatnonzero(free)[np.argmax(nearest[free])])
        picks.append(pick)
        free[pick] = False
        nearest = np.minimum(nearest, ((x - x[pick]) ** 2).sum(-1))
    return np.asarray(picks, dtype=np.int64)


def top_two(p: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most probable and runner-up class (as ints of `known`) and their margin."""
    order = np.argsort(-p, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(p))
    margin = p[rows, order[:, 0]] - p[rows, order[:, 1]]
    return known[order[:, 0]], known[order[:, 1]], margin


def doubt_scores(p: np.ndarray, classes: np.ndarray, short_power: float) -> np.ndarray:
    """(1 - margin of the two most probable classes) x the expected shortness of the cell's
    class, sum_c p_c (mean labels per class / labels of c) ** short_power."""
    known, counts = np.unique(classes, return_counts=True)
    if p.shape[1] != len(known):
        raise ValueError(f"the classifier gave {p.shape[1]} columns for {len(known)} classes")
    top = np.sort(p, axis=1)
    margin = top[:, -1] - top[:, -2]
    shortness = (counts.mean() / counts) ** short_power
    return (1.0 - margin) * (p @ shortness)


def doubtful(
    x: np.ndarray,
    p: np.ndarray,
    classes: np.ndarray,
    free: np.ndarray,
    n: int,
    short_power: float,
    candidates: int,
    seed: int,
) -> np.ndarray:
    """`n` free cells with high doubt scores, spread out: k-means (k = n) over the
    `candidates` x n highest-scoring free cells weighted by score, the candidate nearest each
    centre, highest score first."""
    rows = np.flatnonzero(free)
    score = doubt_scores(p[rows], classes, short_power)
    top = rows[np.argsort(-score, kind="stable")[: max(n, candidates * n)]]
    if len(top) == n:
        return top
    weight = doubt_scores(p[top], classes, short_power) + 1e-12
    km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(x[top], sample_weight=weight)
    mask = np.zeros(len(x), bool)
    mask[top] = True
    picks = nearest_free(x, km.cluster_centers_, mask)
    return picks[np.argsort(-doubt_scores(p[picks], classes, short_power), kind="stable")]
