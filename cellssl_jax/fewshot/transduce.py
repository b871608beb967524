"""Transduction: let the folder's own unlabelled cells shape the labels (label spreading).

A lab's folder holds hundreds to thousands of cells that `classify` reads anyway; cells of one
type sit in dense clusters of feature space, so labels spread along a k-nearest-neighbour graph
over labelled + folder cells follow the folder's own structure (and its class sizes) instead of
the few labelled cells' balance. This is Zhou et al.'s label spreading (2004, NIPS 16) on
scikit-learn's k-NN kernel, written out so that the folder cells can start from soft labels
(an inductive classifier's posteriors) rather than from nothing; with one-hot labelled rows and
zero folder rows it is `sklearn.semi_supervised.LabelSpreading(kernel="knn")` (tested).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import laplacian
from sklearn.neighbors import NearestNeighbors

SPREAD_K = 10
SPREAD_ALPHA = 0.8
MAX_ITER = 200
TOL = 1e-3
SSLDA_DIMS = 64
SSLDA_ITERS = 10


def knn_operator(x: np.ndarray, k: int = SPREAD_K) -> sparse.csr_matrix:
    """scikit-learn's label-spreading operator: D^-1/2 A D^-1/2 of the k-NN connectivity graph
    (each cell its own first neighbour, degrees over columns), diagonal set to 0."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"label spreading needs at least 2 cells, got {len(x)}")
    k = min(k, len(x))
    nn = NearestNeighbors(n_neighbors=k).fit(x)
    graph = nn.kneighbors_graph(nn._fit_X, k, mode="connectivity")
    op = sparse.coo_matrix(-laplacian(graph, normed=True))
    op.data[op.row == op.col] = 0.0
    return op.tocsr()


def spread(
    x: np.ndarray,
    y0: np.ndarray,
    k: int = SPREAD_K,
    alpha: float = SPREAD_ALPHA,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
) -> np.ndarray:
    """Label distributions [N, C] after spreading the starting distributions `y0` [N, C]
    (labelled cells one-hot, folder cells zero or soft) over the k-NN graph of `x`:
    F <- alpha S F + (1 - alpha) y0 until the L1 change is below `tol`; rows normalised to sum
    1 (a row that nothing reached keeps its `y0`, or uniform if that is zero too)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y0 = np.asarray(y0, dtype=np.float64)
    if y0.ndim != 2 or len(y0) != len(x):
        raise ValueError(f"starting labels must be [{len(x)}, classes], got {y0.shape}")
    op = knn_operator(x, k)
    static = (1.0 - alpha) * y0
    f, previous = y0.copy(), np.zeros_like(y0)
    for _ in range(max_iter):
        if np.abs(f - previous).sum() < tol:
            break
        previous = f
        f = alpha * (op @ f) + static
    total = f.sum(axis=1, keepdims=True)
    fallback = np.where(y0.sum(axis=1, keepdims=True) > 0, y0, 1.0 / y0.shape[1])
    fallback = fallback / fallback.sum(axis=1, keepdims=True)
    return np.where(total > 0, f / np.where(total > 0, total, 1.0), fallback)


def shrunk_covariance(scatter: np.ndarray, fourth: float, rows: int) -> np.ndarray:
    """Ledoit-Wolf shrinkage (as `sklearn.covariance.ledoit_wolf(X, assume_centered=True)`)
    from sums over the rows x of X: `scatter` = sum x x^T, `fourth` = sum |x|^4, so that
    weighted residuals need not be stacked in memory (tested against scikit-learn)."""
    p = len(scatter)
    cov = scatter / rows
    mu = np.trace(cov) / p
    sq = float((cov * cov).sum())
    beta = (fourth / rows - sq) / (p * rows)
    delta = (sq - 2.0 * mu * np.trace(cov) + p * mu * mu) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    return (1.0 - shrinkage) * cov + shrinkage * mu * np.eye(p)


def semi_supervised_lda(
    z_lab: np.ndarray,
    y_lab: np.ndarray,
    z_fold: np.ndarray,
    n_classes: int,
    dims: int = SSLDA_DIMS,
    iters: int = SSLDA_ITERS,
    pseudo: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian per class with one shared covariance (LDA), fitted by EM on labelled + folder
    cells: labelled cells keep their class, folder cells are weighted by their
    responsibilities, the mixing weights are the folder's class proportions (with `pseudo`
    cells per class). -> (the folder cells' posteriors under a uniform prior [N, C], which
    maximise balanced accuracy; the mixing weights [C], the count). The first `dims` columns
    of `z` are used (principal components, largest first); the covariance is shrunk
    (Ledoit-Wolf), since a few dozen labelled cells cannot estimate it alone."""
    d = min(dims, z_lab.shape[1])
    zl, zf = np.asarray(z_lab, float)[:, :d], np.asarray(z_fold, float)[:, :d]
    onehot = np.eye(n_classes)[y_lab]
    resp = np.zeros((len(zf), n_classes))
    prior = np.full(n_classes, 1.0 / n_classes)
    loglik = np.zeros_like(resp)
    for it in range(iters + 1):
        weights = np.vstack([onehot, resp])  # [L + N, C]
        z = np.vstack([zl, zf])
        mass = weights.sum(axis=0)
        means = (weights.T @ z) / mass[:, None]
        # the residuals sqrt(w_ic) (z_i - mu_c) of every cell under every class, summed
        scatter, fourth = np.zeros((d, d)), 0.0
        for c in range(n_classes):
            r = z - means[c]
            scatter += (r * weights[:, c:c + 1]).T @ r
            fourth += float((weights[:, c] ** 2 * (r * r).sum(axis=1) ** 2).sum())
        rows = len(z) * n_classes
        cov = shrunk_covariance(scatter, fourth, rows) * (rows / mass.sum())
        # Mahalanobis distances with BLAS: whiten by the Cholesky factor of the precision
        white = np.linalg.cholesky(np.linalg.inv(cov))
        zw, mw = zf @ white, means @ white
        loglik = -0.5 * ((zw * zw).sum(axis=1)[:, None] - 2.0 * zw @ mw.T
                         + (mw * mw).sum(axis=1)[None, :])
        if it == iters:
            break
        logp = loglik + np.log(prior)
        resp = np.exp(logp - logp.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)
        prior = (resp.sum(axis=0) + pseudo) / (len(zf) + n_classes * pseudo)
    post = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    return post / post.sum(axis=1, keepdims=True), prior
