"""The token-merging fast path (models/xcit_pool.py) beside the exact XCiT."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cellssl_jax.models.xcit import XCiT
from cellssl_jax.models.xcit_pool import merge_tokens, pooled_apply

TINY = dict(patch_size=8, embed_dim=32, depth=3, num_heads=4, eta=1.0, tokens_norm=True)


@pytest.mark.parametrize("hp, wp", [(4, 6), (5, 3)])
def test_merge_tokens_is_the_mean_of_each_2x2_cell(hp, wp):
    x = np.random.default_rng(0).standard_normal((2, hp * wp, 5)).astype(np.float32)
    out, h2, w2 = merge_tokens(jnp.asarray(x), hp, wp)
    assert (h2, w2) == (-(-hp // 2), -(-wp // 2))
    grid = x.reshape(2, hp, wp, 5)
    for i in range(h2):
        for j in range(w2):  # an odd side's last cell repeats its last row/column
            rows = [min(2 * i + a, hp - 1) for a in (0, 1)]
            cols = [min(2 * j + b, wp - 1) for b in (0, 1)]
            ref = np.mean([grid[:, r, c] for r in rows for c in cols], axis=0)
            np.testing.assert_allclose(out[:, i * w2 + j], ref, rtol=1e-6, atol=1e-6)


def test_no_merge_is_the_exact_model_and_a_merge_reads_fewer_tokens():
    model = XCiT(**TINY)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 48, 3))
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    exact = model.apply(variables, x)
    same = pooled_apply(model, variables, x, pool_after=TINY["depth"])
    np.testing.assert_array_equal(same["cls"], exact["cls"])
    # the parts path (each block applied on its own parameters) is the exact model too
    fast = jax.jit(lambda v, im: pooled_apply(model, v, im, pool_after=1))(variables, x)
    assert fast["patch_tokens"].shape == (2, 4 * 3, 32)  # 8 x 6 patches -> 4 x 3
    assert fast["cls"].shape == exact["cls"].shape
    assert not np.allclose(fast["cls"], exact["cls"])  # it is another computation


def test_encoder_file_asks_for_the_fast_path(tiny_encoder, tmp_path):
    from cellssl_jax.encoder import load_encoder, rewrite_meta

    fast = load_encoder(rewrite_meta(tiny_encoder, tmp_path / "m.msgpack",
                                     merge_tokens_after=0))
    exact = load_encoder(tiny_encoder)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = (images / 255.0 - exact.mean) / exact.std
    ref = pooled_apply(exact.model, exact.variables, jnp.asarray(x, jnp.float32), 0)["cls"]
    np.testing.assert_allclose(fast.embed(images), ref, atol=1e-5)
    np.testing.assert_allclose(fast.forward(images)["cls"], exact.embed(images), atol=1e-6)
    with pytest.raises(ValueError, match="merge_tokens_after"):
        load_encoder(rewrite_meta(tiny_encoder, tmp_path / "bad.msgpack",
                                  merge_tokens_after=-1))


def test_fast_path_keeps_the_bundled_encoders_cls_close_on_real_cells(shared_data):
    """Tolerance: cosine similarity >= 0.98 per cell and >= 0.99 on average between the CLS of
    the fast path (tokens merged after block 4) and the exact model, on 16 PBC cells read by
    the crop rule (measured 2026-12-04 on 32 cells: min 0.989, mean 0.995)."""
    from PIL import Image

    from cellssl_jax.encoder import load_encoder
    from cellssl_jax.featurize.crop import CropRule

    files = sorted((shared_data / "acevedo_pbc_dev").glob("*/*.jpg"))[::300][:16]
    rule = CropRule(window=192, scale_to=352)
    images = np.stack([rule(np.asarray(Image.open(f).convert("RGB"))) for f in files])
    enc = load_encoder()
    x = jnp.asarray((images / 255.0 - enc.mean) / enc.std, jnp.float32)
    fast = np.asarray(jax.jit(lambda v, im: pooled_apply(enc.model, v, im, 4)["cls"])(
        enc.variables, x))
    exact = enc.forward(images)["cls"]
    cos = (fast * exact).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert cos.min() >= 0.98 and cos.mean() >= 0.99, cos
