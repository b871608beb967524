"""Label spreading on the k-NN graph: the same distributions as scikit-learn's LabelSpreading,
and soft starting labels for the folder cells."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.semi_supervised import LabelSpreading

from cellssl_jax.fewshot.transduce import (
    knn_operator,
    semi_supervised_lda,
    shrunk_covariance,
    spread,
)


def blobs(n=120, k=3, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return rng.normal(size=(k, dim))[y] * 2 + rng.normal(size=(n, dim)), y


@pytest.mark.parametrize("alpha,k", [(0.2, 7), (0.8, 10)])
def test_spread_matches_sklearn_label_spreading(alpha, k):
    x, y = blobs()
    y_semi = np.where(np.arange(len(y)) % 6 == 0, y, -1)
    ref = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=30, tol=1e-3)
    ref.fit(x, y_semi)
    y0 = np.zeros((len(y), 3))
    y0[y_semi >= 0, y_semi[y_semi >= 0]] = 1.0
    ours = spread(x, y0, k=k, alpha=alpha, max_iter=30, tol=1e-3)
    reached = ref.label_distributions_.sum(axis=1) > 0
    assert reached.mean() > 0.9
    np.testing.assert_allclose(ours[reached], ref.label_distributions_[reached], atol=1e-10)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0)


def test_soft_folder_labels_and_unreached_cells():
    x, y = blobs(n=60)
    far = np.vstack([x, [[100.0] * 5, [100.5] * 5], [[-100.0] * 5, [-100.5] * 5]])
    y0 = np.zeros((len(far), 3))
    y0[:10, :] = np.eye(3)[y[:10]]
    y0[-1] = [0.1, 0.1, 0.8]  # a soft start in the second far pair
    out = spread(far, y0, k=2)  # each far cell: itself and its partner
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[-4:-2], [[1 / 3] * 3] * 2, atol=1e-12)  # unreached: uniform
    assert out[-2].argmax() == out[-1].argmax() == 2  # the soft start spreads to its neighbour
    assert (spread(x, y0[:60], k=5)[10:].argmax(axis=1) == y[10:]).mean() > 0.8


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2 cells"):
        knn_operator(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="alpha"):
        spread(np.zeros((4, 2)), np.zeros((4, 2)), alpha=1.0)
    op = knn_operator(np.random.default_rng(0).normal(size=(3, 2)), k=10)  # k > cells
    assert op.shape == (3, 3)


def test_semi_supervised_lda_finds_the_mixture_an_oracle_lda_sees():
    # three Gaussians with one covariance, 3 labelled cells each, a folder of 70 / 20 / 10 %
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6], [0.6, 1.5]])
    means = np.array([[0.0, 0.0], [3.0, 0.5], [0.5, 3.5]])
    draw = lambda y: means[y] + rng.multivariate_normal([0, 0], cov, size=len(y))  # noqa: E731
    y_lab = np.repeat(np.arange(3), 3)
    y = rng.choice(3, size=3000, p=[0.7, 0.2, 0.1])
    z_lab, z = draw(y_lab), draw(y)
    post, mixing = semi_supervised_lda(z_lab, y_lab, z, 3, iters=20)
    np.testing.assert_allclose(mixing, np.bincount(y) / len(y), atol=0.02)
    oracle = LinearDiscriminantAnalysis(priors=[1 / 3] * 3).fit(z, y)  # every label known
    assert (post.argmax(axis=1) == oracle.predict(z)).mean() > 0.97
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    labelled_only, _ = semi_supervised_lda(z_lab, y_lab, z, 3, iters=0)  # no EM: 9 cells
    assert (labelled_only.argmax(axis=1) == oracle.predict(z)).mean() < (
        post.argmax(axis=1) == oracle.predict(z)).mean()


def test_shrunk_covariance_is_ledoit_wolf():
    x = np.random.default_rng(1).normal(size=(30, 12)) @ np.diag(np.linspace(0.5, 3, 12))
    ours = shrunk_covariance(x.T @ x, float(((x * x).sum(axis=1) ** 2).sum()), len(x))
    np.testing.assert_allclose(ours, ledoit_wolf(x, assume_centered=True)[0], rtol=1e-10)
