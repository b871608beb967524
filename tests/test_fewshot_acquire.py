"""fewshot.acquire: the next batch to label -- seed cells cover what the labels miss, doubts are
the smallest margins (checked against a plain margin ranking), weighted toward short classes
(hand-computed), spread over the space, and bad input is named."""

from __future__ import annotations

import numpy as np
import pytest

from cellssl_jax.fewshot import acquire
from cellssl_jax.fewshot.classifiers import pipeline
from cellssl_jax.proposals import propose


def blobs(sizes: list[int], seed: int = 0, spread: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian groups of the given sizes in 10-d."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(scale=spread, size=(len(sizes), 10))
    return centres[labels] + rng.normal(size=(len(labels), 10)), labels


def fixed_proba(p: np.ndarray) -> acquire.Proba:
    """A stand-in classifier that returns the probabilities `p` of every row."""

    def proba(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray) -> np.ndarray:
        assert len(x) == len(p)
        return p

    return proba


def test_no_labels_is_selects_first_batch():
    x, _ = blobs([30, 20, 10])
    got = acquire.next_batch(x, [], [], 3)
    picks, represents = propose(x, 3)
    assert got.index.tolist() == picks.tolist()
    assert got.represents.tolist() == represents.tolist()
    assert got.reason == ["seed"] * 3
    assert np.isnan(got.margin).all() and (got.predicted == -1).all()


def test_seed_cells_find_the_groups_no_label_covers():
    x, y = blobs([60, 60, 40, 8])
    labelled = np.array([0])  # one cell of group 0 labelled: one class, no classifier
    # k-means with k = 1 labelled + 3 asked = the 4 groups
    got = acquire.next_batch(x, labelled, y[labelled], 3)
    assert got.reason == ["seed"] * 3
    assert sorted(y[got.index].tolist()) == [1, 2, 3]  # the 8-cell group is found too
    assert not set(got.index.tolist()) & set(labelled.tolist())
    # the largest uncovered groups first; each stands for its group
    assert y[got.index].tolist() == [1, 2, 3]
    assert got.represents.tolist() == [60, 40, 8]


def test_doubts_are_the_smallest_margins_of_the_classifier():
    """explore 0, no class weight, no diversity step: plain margin sampling, ranked here
    independently from the same logistic regression."""
    x, y = blobs([100, 100], spread=1.5)
    labelled = np.concatenate([np.flatnonzero(y == 0)[:6], np.flatnonzero(y == 1)[:6]])
    got = acquire.next_batch(x, labelled, y[labelled], 5, typical_cells=0, explore=0.0,
                             short_power=0.0, candidates=1)  # fmt: skip
    p = pipeline("lr", "paper-code").fit(x[labelled], y[labelled]).predict_proba(x)
    margin = np.abs(p[:, 0] - p[:, 1])
    margin[labelled] = np.inf
    assert sorted(got.index.tolist()) == sorted(np.argsort(margin)[:5].tolist())
    np.testing.assert_allclose(np.sort(got.margin), np.sort(margin)[:5], atol=1e-12)
    assert set(got.reason) == {"uncertain"}  # both classes hold 6 labels: none is short


def test_doubt_scores_by_hand():
    # classes 0 (1 label) and 1 (3 labels): mean 2, shortness 2 and 2/3
    p = np.array([[0.6, 0.4], [0.4, 0.6], [0.9, 0.1]])
    got = acquire.doubt_scores(p, np.array([0, 1, 1, 1]), short_power=1.0)
    expected = [
        (1 - 0.2) * (0.6 * 2 + 0.4 * 2 / 3),
        (1 - 0.2) * (0.4 * 2 + 0.6 * 2 / 3),
        (1 - 0.8) * (0.9 * 2 + 0.1 * 2 / 3),
    ]
    np.testing.assert_allclose(got, expected)
    flat = acquire.doubt_scores(p, np.array([0, 1, 1, 1]), short_power=0.0)
    np.testing.assert_allclose(flat, [0.8, 0.8, 0.2])


def test_equal_doubts_go_to_the_short_class_first():
    x = np.random.default_rng(0).normal(size=(8, 3))
    labelled, classes = np.array([0, 1, 2, 3]), np.array([0, 1, 1, 1])
    p = np.tile([0.9, 0.1], (8, 1))
    p[4], p[5] = [0.6, 0.4], [0.4, 0.6]  # equal margins; 4 leans to the short class 0
    got = acquire.next_batch(x, labelled, classes, 2, proba=fixed_proba(p), typical_cells=0,
                             explore=0.0, candidates=1)  # fmt: skip
    assert got.index.tolist() == [4, 5]
    assert got.reason == ["short class", "uncertain"]
    assert got.predicted.tolist() == [0, 1] and got.runner_up.tolist() == [1, 0]
    np.testing.assert_allclose(got.margin, [0.2, 0.2])


def test_a_batch_is_spread_over_the_doubtful_groups():
    """Two tight groups of doubtful cells, A a little more doubtful than B: margin ranking alone
    takes both cells from A; the diversity step takes one from each."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(4, 5)) + 30, rng.normal(size=(10, 5)),
                        rng.normal(size=(10, 5)) - 30])  # fmt: skip
    labelled, classes = np.arange(4), np.array([0, 0, 1, 1])
    p = np.tile([0.95, 0.05], (24, 1))
    p[4:14], p[14:24] = [0.51, 0.49], [0.55, 0.45]
    kwargs = dict(proba=fixed_proba(p), typical_cells=0, explore=0.0, short_power=0.0)
    alone = acquire.next_batch(x, labelled, classes, 2, candidates=1, **kwargs)
    spread = acquire.next_batch(x, labelled, classes, 2, candidates=10, **kwargs)
    assert all(4 <= i < 14 for i in alone.index)
    assert sorted(i >= 14 for i in spread.index) == [False, True]
    assert spread.index[0] < 14  # the more doubtful first


def test_typical_cells_and_explore_share_the_batch():
    x, y = blobs([50, 50, 50])
    labelled = np.concatenate([np.flatnonzero(y == c)[:4] for c in (0, 1)])
    early = acquire.next_batch(x, labelled, y[labelled], 8, typical_cells=9)
    assert early.reason == ["seed"] * 8  # 8 labelled < 9: still seeding
    later = acquire.next_batch(x, labelled, y[labelled], 8, typical_cells=8, explore=0.25)
    assert later.reason[:2] == ["seed", "seed"] and "seed" not in later.reason[2:]
    assert 2 in y[later.index[:2]]  # the seed share finds the class nobody labelled
    assert len(set(later.index.tolist())) == 8
    assert not set(later.index.tolist()) & set(labelled.tolist())


def test_more_seed_cells_than_groups():
    """Asking for more seed cells than uncovered clusters still gives distinct free cells."""
    x, y = blobs([6, 6])
    labelled = np.array([0, 6])
    got = acquire.next_batch(x, labelled, y[labelled], 10, typical_cells=100)
    assert sorted(got.index.tolist()) == sorted(set(range(12)) - {0, 6})


@pytest.mark.parametrize(
    "labelled, classes, budget, message",
    [
        ([0, 0], [0, 0], 2, "labelled twice"),
        ([0, 99], [0, 1], 2, "between 0 and 19"),
        ([0, 1], [0], 2, "one class per row"),
        ([0, 1], [0, -1], 2, ">= 0"),
        ([0, 1], [0, 1], 19, "between 1 and the 18 cells not labelled"),
        ([0, 1], [0, 1], 0, "between 1 and"),
    ],
)
def test_bad_labels_are_named(labelled, classes, budget, message):
    x, _ = blobs([10, 10])
    with pytest.raises(ValueError, match=message):
        acquire.next_batch(x, labelled, classes, budget)


def test_bad_features_and_parameters_are_named():
    x, _ = blobs([10, 10])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite 2-D"):
        acquire.next_batch(bad, [0], [0], 2)
    with pytest.raises(ValueError, match="explore"):
        acquire.next_batch(x, [0], [0], 2, explore=1.5)
