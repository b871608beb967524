import numpy as np
import pytest
from sklearn.preprocessing import PowerTransformer

from cellssl_jax.fewshot.power import LIMIT, YeoJohnson, yeo_johnson


@pytest.mark.parametrize("n", [6, 200])
def test_matches_sklearn_power_transformer(n):
    rng = np.random.default_rng(n)
    x = np.exp(rng.normal(size=(n, 12))) * rng.choice([-1.0, 1.0, 0.2], size=12)
    x[:, 0] = 3.0  # a constant feature is left as is (lambda 1)
    x[:, 1] = rng.normal(size=n)  # mixed signs
    ref = PowerTransformer().fit(x)
    ours = YeoJohnson().fit(x)
    # where the likelihood is not flat the lambdas agree closely
    np.testing.assert_allclose(ours.lambdas_, ref.lambdas_, atol=2e-3)
    assert ours.lambdas_[0] == 1.0
    np.testing.assert_allclose(ours.transform(x), ref.transform(x), atol=2e-3)


def test_keeps_float32():
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    assert YeoJohnson().fit_transform(x).dtype == np.float32


def test_a_cell_far_beyond_the_fitted_range_is_bounded_not_extrapolated():
    rng = np.random.default_rng(0)
    x = np.column_stack([0.3 - 0.1 * np.exp(rng.normal(size=30)),  # skewed: lambda ~8
                         rng.normal(size=30)])
    yj, ref = YeoJohnson().fit(x), PowerTransformer().fit(x)
    assert yj.lambdas_[0] > 5
    far = np.array([[8.0, 0.5], [1e100, -1e100]])
    # the power extrapolated (as scikit-learn's PowerTransformer does): ~1e7 standard
    # deviations at 8, inf further out
    with np.errstate(all="ignore"):
        unbounded = (yeo_johnson(far, yj.lambdas_) - yj.mean_) / yj.scale_
    assert unbounded[0, 0] > 1e6 and not np.isfinite(unbounded[1, 0])
    out = yj.transform(far)
    np.testing.assert_array_equal(out[:, 0], [LIMIT, LIMIT])
    assert out[1, 1] == -LIMIT
    np.testing.assert_allclose(out[0, 1], ref.transform(far[:1])[0, 1], atol=2e-3)  # in range
    np.testing.assert_allclose(yj.transform(x), ref.transform(x), atol=2e-3)
