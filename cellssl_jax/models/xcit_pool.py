"""A fast path beside the exact XCiT (models/xcit.py, unchanged): token merging at inference.

After `pool_after` XCA blocks the patch grid is average-pooled 2 x 2 (four neighbouring tokens
merged into one), so the remaining blocks and the class attention read a quarter of the tokens:
with 12 blocks and `pool_after` k the blocks cost (k + (12 - k) / 4) / 12 of the exact path's.
XCiT suits it better than a ViT would: its attention is a d x d map over channels whose
q/k are L2-normalised along the tokens, so the map barely depends on how many tokens there are,
and the local patch interaction still sees a grid. The same weights are read (the exact model's
parameter tree); `pool_after` >= depth is the exact model. Inference only (BatchNorm in eval).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cellssl_jax.models.xcit import (
    LN_EPS,
    ClassAttentionBlock,
    ConvPatchEmbed,
    PositionalEncodingFourier,
    XCABlock,
    XCiT,
)


def merge_tokens(x: jax.Array, hp: int, wp: int) -> tuple[jax.Array, int, int]:
    """Tokens [B, hp * wp, C] -> 2 x 2 means [B, ceil(hp/2) * ceil(wp/2), C] (an odd side is
    padded by repeating its last row/column)."""
    b, _, c = x.shape
    grid = x.reshape(b, hp, wp, c)
    grid = jnp.pad(grid, ((0, 0), (0, hp % 2), (0, wp % 2), (0, 0)), mode="edge")
    h2, w2 = grid.shape[1] // 2, grid.shape[2] // 2
    grid = grid.reshape(b, h2, 2, w2, 2, c).mean(axis=(2, 4))
    return grid.reshape(b, h2 * w2, c), h2, w2


def pooled_apply(model: XCiT, variables: dict, images: jax.Array,
                 pool_after: int) -> dict[str, jax.Array]:
    """`model.apply(variables, images)` ("cls", "patch_tokens"; eval mode) with the tokens
    merged 2 x 2 after block `pool_after` (>= model.depth: the exact model)."""
    if pool_after >= model.depth:
        out = model.apply(variables, images, train=False)
        return {"cls": out["cls"], "patch_tokens": out["patch_tokens"]}
    params, stats = variables["params"], variables.get("batch_stats", {})
    dt = model.dtype

    def part(module: nn.Module, name: str, *args):
        tree = {"params": params[name]}
        if name in stats:
            tree["batch_stats"] = stats[name]
        return module.apply(tree, *args)

    x = part(ConvPatchEmbed(model.patch_size, model.embed_dim, dtype=dt), "patch_embed",
             images.astype(dt), False)
    b, hp, wp, c = x.shape
    x = x.reshape(b, hp * wp, c)
    x = x + part(PositionalEncodingFourier(c, dtype=dt), "pos_embed", hp, wp).astype(dt)
    for i in range(model.depth):
        if i == pool_after:
            x, hp, wp = merge_tokens(x, hp, wp)
        block = XCABlock(model.num_heads, model.eta, model.mlp_ratio, dtype=dt)
        x = part(block, f"blocks_{i}", x, hp, wp, False)
    cls_token = params["cls_token"].astype(dt)
    x = jnp.concatenate([jnp.broadcast_to(cls_token, (b, 1, c)), x], axis=1)
    for i in range(model.cls_attn_layers):
        block = ClassAttentionBlock(model.num_heads, model.eta, model.tokens_norm,
                                    model.mlp_ratio, dtype=dt)
        x, _ = part(block, f"cls_attn_blocks_{i}", x)
    x = part(nn.LayerNorm(epsilon=LN_EPS, dtype=dt), "norm", x)
    return {"cls": x[:, 0], "patch_tokens": x[:, 1:]}
