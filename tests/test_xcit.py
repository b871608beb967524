"""XCiT model tests that need no torch: shapes, train mode, dtype, parameter counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cellssl_jax.models.xcit import XCIT_VARIANTS, Conv3x3s2, XCiT, depthwise_conv3x3, xcit

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=4, eta=1.0, tokens_norm=True)


def _init(model: XCiT, shape=(2, 40, 48, 3)):
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    return jax.jit(model.init)(jax.random.PRNGKey(0), x), x


def test_output_shapes_non_square_and_odd_sizes():
    model = XCiT(**TINY)
    variables, _ = _init(model)
    # 45 x 51 is not a multiple of 8: each stride-2 conv maps a side to ceil(side / 2).
    x = jnp.ones((3, 45, 51, 3))
    out = jax.jit(model.apply)(variables, x)
    assert out["cls"].shape == (3, 32)
    assert out["patch_tokens"].shape == (3, 6 * 7, 32)
    assert out["cls_attention"].shape == (3, 4, 6, 7)
    # class attention is a softmax over CLS + patches: the patch part sums to < 1 per head
    sums = np.asarray(out["cls_attention"].sum(axis=(2, 3)))
    assert np.all(sums > 0) and np.all(sums < 1)


def test_train_mode_updates_batch_stats_and_uses_dropout_rng():
    model = XCiT(**TINY, drop_path_rate=0.5)
    variables, x = _init(model)
    train_step = jax.jit(lambda v, x, key: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                        rngs={"dropout": key}))
    out, updates = train_step(variables, x, jax.random.PRNGKey(2))
    before = jax.tree_util.tree_leaves(variables["batch_stats"])
    after = jax.tree_util.tree_leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    out2, _ = train_step(variables, x, jax.random.PRNGKey(3))
    assert not np.allclose(out["cls"], out2["cls"])  # different stochastic-depth masks
    # eval mode is deterministic and needs no rng
    evaluate = jax.jit(model.apply)
    e1, e2 = evaluate(variables, x), evaluate(variables, x)
    np.testing.assert_array_equal(e1["cls"], e2["cls"])


def test_batchnorm_tracks_unbiased_variance_like_torch():
    model = XCiT(**TINY)
    variables, x = _init(model)
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x)
    # first patch-embed conv output, recomputed by hand
    kernel = variables["params"]["patch_embed"]["conv_0"]["kernel"]
    y = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = np.asarray(y).reshape(-1, y.shape[-1])
    stats = updates["batch_stats"]["patch_embed"]["bn_0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * y.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * y.var(0, ddof=1), rtol=1e-4)


@pytest.mark.parametrize("features", [16, 24])  # 24: the zero-4th-channel path (xcit_tiny p16)
def test_conv3x3s2_matches_plain_strided_conv(features):
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 45, 51, 3))
    conv = Conv3x3s2(features)
    variables = conv.init(jax.random.PRNGKey(0), x)
    kernel = variables["params"]["kernel"]
    assert kernel.shape == (3, 3, 3, features)  # the padding never reaches the parameters
    ref = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out = jax.jit(conv.apply)(variables, x)
    assert out.shape == (2, 23, 26, features)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    model = XCiT(**TINY, dtype=jnp.bfloat16)
    variables, x = _init(model)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
    out = jax.jit(model.apply)(variables, x)
    ref = jax.jit(XCiT(**TINY).apply)(variables, x)
    assert out["cls"].dtype == jnp.bfloat16
    assert np.abs(np.asarray(out["cls"], np.float32) - np.asarray(ref["cls"])).max() < 0.1


def test_depthwise_conv_matches_grouped_conv():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 6))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 6))
    ref = jax.lax.conv_general_dilated(x, k[:, :, None, :], (1, 1), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       feature_group_count=6)
    np.testing.assert_allclose(depthwise_conv3x3(x, k), ref, atol=1e-5)


def test_variant_registry_and_overrides():
    assert len(XCIT_VARIANTS) == 14
    m = xcit("xcit_small_12_p8", drop_path_rate=0.1)
    assert (m.patch_size, m.embed_dim, m.depth, m.num_heads, m.tokens_norm) == (8, 384, 12, 8, True)
    assert m.drop_path_rate == 0.1
    with pytest.raises(ValueError, match="unknown XCiT variant"):
        xcit("xcit_huge_99_p4")


# timm 1.0.31 backbone parameter counts (num_classes=0, so no classifier head), made with:
#   with torch.device("meta"): m = timm.create_model(name + "_224", num_classes=0)
#   sum(p.numel() for p in m.parameters())
TIMM_PARAM_COUNTS = {
    "xcit_nano_12_p16": 2924224,
    "xcit_tiny_12_p16": 6523272,
    "xcit_tiny_24_p16": 11923896,
    "xcit_small_12_p16": 25868304,
    "xcit_small_24_p16": 47286384,
    "xcit_medium_24_p16": 83882752,
    "xcit_large_24_p16": 188327136,
    "xcit_nano_12_p8": 2920016,
    "xcit_tiny_12_p8": 6513504,
    "xcit_tiny_24_p8": 11914128,
    "xcit_small_12_p8": 25828032,
    "xcit_small_24_p8": 47246112,
    "xcit_medium_24_p8": 83810624,
    "xcit_large_24_p8": 188163648,
}


@pytest.mark.parametrize("name", sorted(TIMM_PARAM_COUNTS))
def test_parameter_count_matches_timm(name):
    model = xcit(name)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(shapes["params"]))
    assert count == TIMM_PARAM_COUNTS[name]
