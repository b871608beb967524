import numpy as np
import pytest

from cellssl_jax.fewshot.sampling import rng_for, sample_per_class, stratified_split

LABELS = np.repeat([0, 1, 2], [50, 20, 3])


def test_sample_counts_and_stratification():
    idx = sample_per_class(LABELS, 10, rng_for(0, 1, 10, 0))
    assert np.bincount(LABELS[idx]).tolist() == [10, 10, 3]  # the 3-cell class gives all it has
    assert len(set(idx.tolist())) == len(idx)  # no cell twice
    assert np.all(np.diff(idx) > 0)


def test_sample_is_deterministic_per_seed_and_repetition():
    a = sample_per_class(LABELS, 10, rng_for(7, 1, 10, 0))
    b = sample_per_class(LABELS, 10, rng_for(7, 1, 10, 0))
    c = sample_per_class(LABELS, 10, rng_for(7, 1, 10, 1))
    d = sample_per_class(LABELS, 10, rng_for(8, 1, 10, 0))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_sample_skips_unlabelled_and_rejects_zero():
    labels = np.array([-1, -1, 0, 0, 1])
    assert sorted(sample_per_class(labels, 5, rng_for(0)).tolist()) == [2, 3, 4]
    with pytest.raises(ValueError, match=">= 1"):
        sample_per_class(labels, 0, rng_for(0))


def test_stratified_split_fractions_and_determinism():
    labels = np.concatenate([LABELS, [-1, -1], [3]])  # unlabelled rows, one single-cell class
    train, test = stratified_split(labels, 0.7, seed=3)
    assert np.bincount(labels[train]).tolist() == [35, 14, 2, 1]
    assert np.bincount(labels[test], minlength=4).tolist() == [15, 6, 1, 0]
    assert not set(train) & set(test)
    again = stratified_split(labels, 0.7, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.array_equal(train, stratified_split(labels, 0.7, seed=4)[0])
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(labels, 1.0, seed=0)
