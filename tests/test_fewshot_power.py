import numpy as np
import pytest
from sklearn.preprocessing import PowerTransformer

from cellssl_jax.fewshot.power import YeoJohnson


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
