"""DINO head: layout of the weight-normed prototypes, L2 bottleneck, the optional gain."""

import jax
import jax.numpy as jnp
import numpy as np

from cellssl_jax.models.heads import DINOHead


def _head(**kw):
    head = DINOHead(out_dim=64, hidden_dim=32, bottleneck_dim=16, **kw)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 24))
    return head, head.init(jax.random.PRNGKey(1), x)["params"], x


def test_prototypes_stored_out_first_and_row_normalised():
    head, params, x = _head()
    v = np.asarray(params["weight_v"])
    assert v.shape == (64, 16)
    assert "weight_g" not in params  # g fixed to 1 with norm_last_layer
    # logits = <L2(bottleneck), v_row / |v_row|>: scaling a row of v leaves logits unchanged
    scaled = {**params, "weight_v": params["weight_v"].at[3].multiply(7.0)}
    np.testing.assert_allclose(head.apply({"params": params}, x),
                               head.apply({"params": scaled}, x), rtol=1e-5, atol=1e-6)
    # and each logit is a cosine, so |logit| <= 1
    assert np.abs(np.asarray(head.apply({"params": params}, x))).max() <= 1.0 + 1e-5


def test_hand_computed_forward():
    head, params, x = _head(nlayers=1)
    w, b = params["mlp_0"]["kernel"], params["mlp_0"]["bias"]
    z = np.asarray(x @ w + b)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    v = np.asarray(params["weight_v"])
    expect = z @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
    np.testing.assert_allclose(head.apply({"params": params}, x), expect, rtol=1e-5, atol=1e-6)


def test_unnormalised_last_layer_has_gain():
    head, params, x = _head(norm_last_layer=False)
    assert params["weight_g"].shape == (64, 1)
    doubled = {**params, "weight_g": params["weight_g"] * 2}
    np.testing.assert_allclose(2 * head.apply({"params": params}, x),
                               head.apply({"params": doubled}, x), rtol=1e-5)
    assert jnp.all(jnp.isfinite(head.apply({"params": params}, x)))
