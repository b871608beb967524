"""DINO projection head and multi-crop wrapper (backbone + head), as DINO's vision_transformer.py.

The weight-normalised prototype layer is stored as ``weight_v`` of shape (out_dim, bottleneck)
and normalised along its rows: the transposed layout, normalised along axis 0, cost ~4 s per
forward on XLA:CPU against ~7 ms for this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_trunc02 = nn.initializers.truncated_normal(stddev=0.02)


def _torch_linear_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """PyTorch's default nn.Linear init, U(+-1/sqrt(fan_in)), for (out, in) weights."""
    bound = 1.0 / jnp.sqrt(shape[1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class DINOHead(nn.Module):
    """MLP (GELU) -> bottleneck -> L2 normalise -> weight-normalised prototypes (logits).

    With ``norm_last_layer`` the weight-norm gain g is fixed to 1 (not a parameter), as DINO.
    """

    out_dim: int
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    norm_last_layer: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dims = [self.hidden_dim] * (max(self.nlayers, 1) - 1) + [self.bottleneck_dim]
        for i, d in enumerate(dims):
            x = nn.Dense(d, kernel_init=_trunc02, dtype=self.dtype, name=f"mlp_{i}")(x)
            if i < len(dims) - 1:
                x = nn.gelu(x, approximate=False)
        x = x.astype(jnp.float32)
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        v = self.param(
            "weight_v", _torch_linear_init, (self.out_dim, self.bottleneck_dim), jnp.float32
        )
        w = v / jnp.linalg.norm(v, axis=1, keepdims=True)
        if not self.norm_last_layer:
            w = w * self.param("weight_g", nn.initializers.ones, (self.out_dim, 1), jnp.float32)
        return x @ w.T


class MultiCropModel(nn.Module):
    """Backbone over each group of same-resolution crops, then one head over all CLS tokens.

    ``crops`` is a sequence of arrays [n_views * B, H, W, 3] (one per resolution); the output is
    the logits of all views in that order, [sum n_views * B, out_dim].
    """

    backbone: nn.Module
    head: DINOHead

    def __call__(self, crops: Sequence[jax.Array], train: bool = False) -> jax.Array:
        feats = [self.backbone(c, train=train)["cls"] for c in crops]
        return self.head(jnp.concatenate(feats, axis=0))
