"""Parameter groups, AGC and per-tensor clipping against hand-computed cases."""

import jax.numpy as jnp
import numpy as np
import pytest

from cellssl_jax.dino.optim import (
    adaptive_grad_clip,
    decay_mask,
    last_layer_mask,
    per_tensor_clip,
    zero_masked,
)

PARAMS = {
    "backbone": {"fc": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
                 "norm": {"scale": jnp.ones(2)}, "conv1_bias": jnp.ones(2),
                 "temperature": jnp.ones((2, 1, 1))},
    "head": {"mlp_0": {"kernel": jnp.ones((2, 4))}, "weight_v": jnp.ones((5, 4))},
}


def test_no_decay_on_biases_and_1d():
    m = decay_mask(PARAMS)
    assert m["backbone"]["fc"]["kernel"] and m["head"]["weight_v"]
    assert not m["backbone"]["fc"]["bias"] and not m["backbone"]["norm"]["scale"]
    assert not m["backbone"]["conv1_bias"]
    assert m["backbone"]["temperature"]  # 3-D, as DINO (only biases and 1-D are exempt)


def test_last_layer_mask_and_freeze():
    m = last_layer_mask(PARAMS)
    assert m["head"]["weight_v"] and not m["head"]["mlp_0"]["kernel"]
    z = zero_masked(PARAMS, m, jnp.asarray(True))
    assert float(z["head"]["weight_v"].sum()) == 0
    assert float(z["head"]["mlp_0"]["kernel"].sum()) == 8
    kept = zero_masked(PARAMS, m, jnp.asarray(False))
    assert float(kept["head"]["weight_v"].sum()) == 20


def test_agc_per_output_unit():
    # Flax kernel (in=2, out=2): unit = column. Column 0 |w| = 5, column 1 |w| = 1.
    p = {"k": jnp.array([[3.0, 0.0], [4.0, 1.0]])}
    g = {"k": jnp.array([[10.0, 0.1], [0.0, 0.0]])}
    out, _ = adaptive_grad_clip(0.32).update(g, None, p)
    # column 0: |g| = 10 > 0.32 * 5 = 1.6 -> scaled to norm 1.6; column 1: 0.1 < 0.32 kept
    np.testing.assert_allclose(out["k"][:, 0], [1.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(out["k"][:, 1], [0.1, 0.0], rtol=1e-6)


def test_agc_out_first_prototypes():
    # weight_v is (out, in): unit = row
    p = {"weight_v": jnp.array([[3.0, 4.0], [1.0, 0.0]])}
    g = {"weight_v": jnp.array([[0.0, 10.0], [0.1, 0.0]])}
    out, _ = adaptive_grad_clip(0.32).update(g, None, p)
    np.testing.assert_allclose(out["weight_v"], [[0.0, 1.6], [0.1, 0.0]], rtol=1e-5)


def test_per_tensor_clip():
    g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])}
    out, _ = per_tensor_clip(1.0).update(g, None)
    assert float(jnp.linalg.norm(out["a"])) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(out["b"], g["b"])
