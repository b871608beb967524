"""Quantification: the class proportions of a folder, not just each cell's label.

A classifier fitted on balanced labels carries balanced priors, so its count over-calls rare
classes in a real folder (normal blood is ~55 % neutrophils, ~1 % basophils). Two estimators of
the folder's proportions, and the re-weighting of posteriors to them:

- `em_priors`: the EM of Saerens, Latinne & Decaestecker (2002, Neural Computation 14:21-41):
  alternate re-weighting the posteriors by new/old priors and averaging them. Plain EM trusts
  the posteriors; with a few labels per class they are far from calibrated and EM starves the
  rare classes, so `pseudo` adds that many cells per class to every M-step (a Dirichlet prior,
  MAP-EM), which keeps a class from vanishing on weak evidence.
- `softened_em_priors`: EM again from softened posteriors when its first estimate says the
  folder is far from balanced: posteriors fitted on a few cells per class (and the
  semi-supervised LDA's, in many dimensions) are overconfident, so they hold a mix close to the
  labels' balance and EM moves too little. They are softened until their mean confidence on
  the folder matches the labelled cells' cross-validated accuracy (`matching_temperature`, at
  most SOFTEN_MAX_T): on the validation parts this cut the count error on normal-blood
  folders by 10-50 % (docs/LAB_COUNT.md, fourth pass);
- `adjusted_count`: adjusted classify-and-count / a confusion-matrix estimate (Forman 2008;
  Lipton et al. 2018, "BBSE"): the folder's predicted-class frequencies q are the true
  proportions p seen through the classifier's confusion rates M (q = M^T p); solve for p >= 0,
  sum 1 by non-negative least squares.
- `fit_temperature` / `temper`: temperature scaling (one parameter fitted on the labelled cells'
  cross-validated posteriors), so EM starts from calibrated posteriors;
- `count_interval`: a 95 % interval for each class's percent from a parametric bootstrap of
  both sources of error: the folder's cells (multinomial on its predicted counts) and the
  classifier's confusion rates (each row resampled from the labelled cells' cross-validated
  predictions, Dirichlet with a Jeffreys prior), each replicate pushed through `adjusted_count`;
- `refit_interval`: the same for an EM count, by refitting the classifier on resampled
  labelled cells and re-running EM on resampled folder cells (the interval `classify` reports
  with a prior step: docs/LAB_COUNT.md, "The interval").

numpy + scipy only (`refit_interval` is handed its classifier).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq, minimize_scalar, nnls

EM_TOL = 1e-8
EM_MAX_ITER = 1000
SUM_WEIGHT = 1e3  # weight of the sum-to-one row in the constrained least squares
SOFTEN_TV = 0.2  # first estimate this far from uniform (total variation): soften and rerun
SOFTEN_MAX_T = 3.0  # the most the posteriors are softened (chosen on validation)


def _check_proba(proba: np.ndarray) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 1:
        raise ValueError(f"posteriors must be [cells, classes], got shape {proba.shape}")
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise ValueError("posteriors must be finite and non-negative")
    return proba


def reweight(proba: np.ndarray, prior: np.ndarray, train_prior: np.ndarray | None = None
             ) -> np.ndarray:
    """Posteriors under a new class prior: p(y|x) * prior / train_prior, renormalised per cell
    (Bayes' rule with the likelihoods unchanged). A cell whose every class gets weight 0 keeps
    its old posterior rather than becoming NaN."""
    proba = _check_proba(proba)
    k = proba.shape[1]
    train_prior = np.full(k, 1.0 / k) if train_prior is None else np.asarray(train_prior, float)
    w = proba * (np.asarray(prior, float) / np.maximum(train_prior, 1e-300))[None, :]
    total = w.sum(axis=1, keepdims=True)
    return np.where(total > 0, w / np.where(total > 0, total, 1.0), proba)


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Posteriors softened (T > 1) or sharpened (T < 1): p^(1/T), renormalised per cell."""
    logp = np.log(np.clip(_check_proba(proba), 1e-300, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that makes held-out posteriors (e.g. cross-validated, of labelled cells)
    most likely for their labels (temperature scaling, Guo et al. 2017), in [0.05, 20]."""
    proba = _check_proba(proba)
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        return -np.log(np.clip(temper(proba, np.exp(log_t))[np.arange(len(labels)), labels],
                               1e-300, None)).mean()

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(best.x))


def em_priors(
    proba: np.ndarray,
    train_prior: np.ndarray | None = None,
    pseudo: float = 0.0,
    max_iter: int = EM_MAX_ITER,
    tol: float = EM_TOL,
) -> tuple[np.ndarray, np.ndarray]:
    """Saerens et al.'s EM -> (the folder's prior [C], the re-weighted posteriors [N, C]).

    `proba`: posteriors of the folder's cells from a classifier fitted under `train_prior`
    (default uniform: balanced labels, or class_weight="balanced"). `pseudo`: cells added to
    each class in every M-step (0: the paper's plain EM)."""
    proba = _check_proba(proba)
    n, k = proba.shape
    if n == 0:
        raise ValueError("no cells to estimate proportions from")
    train_prior = np.full(k, 1.0 / k) if train_prior is None else np.asarray(train_prior, float)
    prior = train_prior.copy()
    post = proba
    for _ in range(max_iter):
        post = reweight(proba, prior, train_prior)
        new = (post.sum(axis=0) + pseudo) / (n + k * pseudo)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return prior, reweight(proba, prior, train_prior)


def matching_temperature(proba: np.ndarray, accuracy: float, most: float = SOFTEN_MAX_T
                         ) -> float:
    """The temperature in [1, most] at which the cells' mean top posterior equals `accuracy`
    (calibrated posteriors are on average as confident as they are right): 1 when they are no
    more confident than that, `most` when even it leaves them more confident."""
    proba = _check_proba(proba)

    def excess(t: float) -> float:
        return float(temper(proba, t).max(axis=1).mean()) - accuracy

    if excess(1.0) <= 0:
        return 1.0
    if excess(most) >= 0:
        return most
    return float(brentq(excess, 1.0, most, xtol=1e-4))


def softened_em_priors(proba: np.ndarray, accuracy: float, pseudo: float = 0.0,
                       tv: float = SOFTEN_TV, most: float = SOFTEN_MAX_T) -> np.ndarray:
    """The folder's prior [C] by `em_priors`; when that estimate is more than `tv` (total
    variation) from uniform, by `em_priors` again on the posteriors softened to the
    classifier's `accuracy` (`matching_temperature`). A folder that looks balanced keeps the
    first estimate, which softening would only add noise to."""
    prior, _ = em_priors(proba, pseudo=pseudo)
    k = prior.size
    if 0.5 * np.abs(prior - 1.0 / k).sum() > tv:
        t = matching_temperature(proba, accuracy, most)
        if t > 1.0:
            prior, _ = em_priors(temper(proba, t), pseudo=pseudo)
    return prior


def confusion_rates(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                    smoothing: float = 0.0) -> np.ndarray:
    """M[i, j] = P(predicted j | true i) from labelled predictions (e.g. cross-validated), with
    `smoothing` added to every cell count; a class with no cells gets the identity row."""
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1.0)
    counts += smoothing
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), np.eye(n_classes))


def adjusted_count(q: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Proportions p >= 0, sum 1, that best explain the predicted frequencies q = rates^T p
    (least squares; exact when rates is invertible and the solution is feasible)."""
    q = np.asarray(q, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    k = len(q)
    if rates.shape != (k, k):
        raise ValueError(f"confusion rates must be [{k}, {k}], got {rates.shape}")
    a = np.vstack([rates.T, SUM_WEIGHT * np.ones((1, k))])
    b = np.concatenate([q / max(q.sum(), 1e-300), [SUM_WEIGHT]])
    p, _ = nnls(a, b, maxiter=50 * k)
    total = p.sum()
    return p / total if total > 0 else np.full(k, 1.0 / k)


def count_interval(
    predicted: np.ndarray,
    cv_true: np.ndarray,
    cv_pred: np.ndarray,
    n_classes: int,
    replicates: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) fractions [C] of a `level` interval for each class's proportion in a folder.

    `predicted`: the folder's predicted labels; `cv_true`, `cv_pred`: the labelled cells' labels
    and cross-validated predictions. Each replicate draws the folder's predicted counts from a
    multinomial and each confusion row from Dirichlet(cv counts + 1/2), then solves
    `adjusted_count`; the interval is the replicates' central `level` range."""
    predicted = np.asarray(predicted)
    n = len(predicted)
    if n == 0:
        raise ValueError("no cells to count")
    rng = np.random.default_rng(seed)
    q = np.bincount(predicted, minlength=n_classes) / n
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (np.asarray(cv_true), np.asarray(cv_pred)), 1.0)
    q_b = rng.multinomial(n, q, size=replicates) / n
    rates = np.stack([rng.dirichlet(row + 0.5, size=replicates) for row in counts], axis=1)
    draws = np.array([adjusted_count(q_b[b], rates[b]) for b in range(replicates)])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return low, high


def refit_interval(
    z_lab: np.ndarray,
    y_lab: np.ndarray,
    z_fold: np.ndarray,
    n_classes: int,
    make_model: Callable[[], object],
    replicates: int = 100,
    level: float = 0.95,
    inflate: float = 1.0,
    seed: int = 0,
    soften_to: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) fractions [C] of a `level` interval for each class's proportion in a folder,
    by a non-parametric bootstrap of the whole estimate: each replicate resamples the labelled
    cells within each class and the folder's cells, refits `make_model()` (an unfitted
    scikit-learn classifier with balanced priors) and runs `em_priors` (1 pseudo-cell per
    class; `softened_em_priors` to accuracy `soften_to` when given) on its posteriors. With
    few labels the classifier's own variation dominates the error, and only a refit sees it.
    The replicates' central range is widened `inflate` times around their median. Each
    replicate's share leaves out EM's pseudo-cell, and a lower end under half a cell is 0, so
    the interval of a class absent from the folder reaches 0."""
    z_lab, z_fold = np.asarray(z_lab, np.float64), np.asarray(z_fold, np.float64)
    y_lab = np.asarray(y_lab)
    if len(z_fold) == 0:
        raise ValueError("no cells to count")
    if replicates < 2 or not 0 < level < 1 or inflate < 1:
        raise ValueError("need replicates >= 2, 0 < level < 1 and inflate >= 1")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y_lab == c) for c in np.unique(y_lab)]
    draws, n = np.empty((replicates, n_classes)), len(z_fold)
    for b in range(replicates):
        lab = np.concatenate([rng.choice(m, len(m)) for m in members])
        fold = rng.integers(0, n, n)
        model = make_model().fit(z_lab[lab], y_lab[lab])
        proba = np.zeros((len(fold), n_classes))
        proba[:, model.classes_] = model.predict_proba(z_fold[fold])
        # the share of the posterior mass alone, without EM's pseudo-cell
        prior = (em_priors(proba, pseudo=1.0)[0] if soften_to is None
                 else softened_em_priors(proba, soften_to, pseudo=1.0))
        draws[b] = np.maximum(prior * (n + n_classes) - 1.0, 0) / n
    tail = 100 * (1 - level) / 2
    low, mid, high = np.percentile(draws, [tail, 50, 100 - tail], axis=0)
    low = mid - inflate * (mid - low)
    low[low * n < 0.5] = 0.0  # under half a cell: none
    return np.clip(low, 0, 1), np.clip(mid + inflate * (high - mid), 0, 1)
