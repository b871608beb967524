import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score

from cellssl_jax.fewshot.metrics import (
    balanced_accuracy,
    confusion,
    group_sensitivity,
    sensitivities,
)


def test_metrics_match_sklearn_on_toy_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    conf = confusion(y, pred, 4)
    assert np.array_equal(conf, confusion_matrix(y, pred, labels=range(4)))
    np.testing.assert_allclose(sensitivities(conf), recall_score(y, pred, average=None))
    assert balanced_accuracy(sensitivities(conf)) == pytest.approx(balanced_accuracy_score(y, pred))


def test_class_without_cells_is_nan_and_ignored():
    conf = confusion(np.array([0, 0, 1]), np.array([0, 2, 1]), 3)
    sens = sensitivities(conf)
    assert sens[0] == 0.5 and sens[1] == 1.0 and np.isnan(sens[2])
    assert balanced_accuracy(sens) == 0.75


def test_group_sensitivity_counts_any_member_as_correct():
    # class 0 and 1 form a group; 2 is outside
    conf = np.array([[2, 3, 5], [1, 1, 0], [0, 0, 4]])
    assert group_sensitivity(conf, [0, 1]) == pytest.approx(7 / 12)


def test_balanced_accuracy_excludes_named_rows():
    assert balanced_accuracy({"a": 0.2, "b": 0.4, "sup": 1.0}, exclude={"sup"}) == pytest.approx(
        0.3
    )
    with pytest.raises(ValueError, match="undefined"):
        balanced_accuracy(np.array([np.nan]))
