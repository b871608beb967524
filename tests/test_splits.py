"""The one train/test rule (cellssl_jax/splits.py): the builders, evaluate --split and the
scripts all cut with it (tie to the builders and evaluate: test_builders.py)."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from cellssl_jax.splits import SPLIT_SEED, file_id, stratified_split, three_way_split
from cellssl_jax.vocab import builder_labels


def test_stratified_split_is_70_30_per_class_and_order_free():
    ids = [f"{i:04x}" for i in range(100)]
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train = stratified_split(ids, labels, seed=1)
    assert [int(train[labels == c].sum()) for c in range(3)] == [35, 21, 14]
    perm = np.random.default_rng(0).permutation(100)
    shuffled = stratified_split([ids[i] for i in perm], labels[perm], seed=1)
    np.testing.assert_array_equal(shuffled, train[perm])
    assert not np.array_equal(stratified_split(ids, labels, seed=2), train)


def test_three_way_split_keeps_the_builders_test_part_and_is_order_free():
    ids = [f"{i:04x}" for i in range(400)]
    labels = np.repeat([0, 1], 200)
    parts = three_way_split(ids, labels)
    np.testing.assert_array_equal(parts == "test", ~stratified_split(ids, labels, SPLIT_SEED))
    for c in (0, 1):
        got = Counter(parts[labels == c])
        assert got == {"fit": 98, "validation": 42, "test": 60}  # 70 % of 140 = 98
    perm = np.random.default_rng(0).permutation(400)
    again = three_way_split([ids[i] for i in perm], labels[perm])
    np.testing.assert_array_equal(again, parts[perm])


def test_other_fractions_cut_the_same_permutation_and_keep_both_sides():
    ids = [f"{i:04x}" for i in range(60)]
    labels = np.repeat([0, 1, 2, 3], [30, 20, 9, 1])  # the 1-cell class goes to train
    at_07 = stratified_split(ids, labels, SPLIT_SEED)
    at_08 = stratified_split(ids, labels, SPLIT_SEED, 0.8)
    assert not (~at_08 & at_07).any()  # a larger fraction's test part lies inside 0.7's
    assert [int(at_08[labels == c].sum()) for c in range(4)] == [24, 16, 7, 1]
    two = stratified_split(["a", "b"], np.array([0, 0]), SPLIT_SEED, 0.99)
    assert two.tolist().count(True) == 1  # never a class with no test cell
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(ids, labels, SPLIT_SEED, 1.0)


def test_file_id_is_the_sha256_of_the_bytes(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"cell")
    assert file_id(tmp_path / "a.jpg") == hashlib.sha256(b"cell").hexdigest()


def test_builder_labels_number_a_partial_folder_as_its_release():
    assert builder_labels(["BLA", "EOS", "NIF"]) == [3, 5, 16]  # only Matek BM has NIF
    assert builder_labels(["EOS", "MYO"]) == [2, 10]  # only Matek blood has MYO
    assert builder_labels(["Basophil", "Neutrophil"]) == [0, 4]  # Raabin (case-sensitive)
    assert builder_labels(["EOS", "LYT"]) == [0, 1]  # BM and blood disagree: folder order
    assert builder_labels(["blasts", "others"]) == [0, 1]  # a lab's own classes
