import numpy as np
import pytest

from cellssl_jax.fewshot.sampling import rng_for, sample_per_class

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


def test_builder_parts_number_classes_as_the_builder_does(tmp_path):
    from cellssl_jax.fewshot.sampling import builder_parts
    from cellssl_jax.splits import file_id, three_way_split

    paths = []
    for i in range(40):
        paths.append(tmp_path / f"cell{i}.jpg")
        paths[-1].write_bytes(f"cell {i}".encode())
    labels = np.repeat([0, 1], 20)  # a folder with 2 of acevedo's 8 classes
    parts = builder_parts(paths, labels, ["eosinophil", "lymphocyte"])
    ids = [file_id(p) for p in paths]
    np.testing.assert_array_equal(parts, three_way_split(ids, np.repeat([1, 4], 20)))
    assert not np.array_equal(parts, three_way_split(ids, labels))  # the folder's own 0, 1
