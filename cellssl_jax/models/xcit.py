"""XCiT (Cross-Covariance Image Transformer) in Flax Linen, numerically equivalent to timm's.

Tokens stay in [B, N, C] with N = Hp * Wp in row-major order, which is NHWC once reshaped: the
local patch interaction (LPI) needs no transposes. Fidelity to timm (the numerical reference):
exact-erf GELU, LayerNorm eps 1e-6, BatchNorm eps 1e-5, 3x3 stride-2 convs padded (1, 1) so any
input size works (each conv maps H -> ceil(H / 2)), XCA with q/k L2-normalised along the token
axis and a learnable per-head temperature. Parameter names follow timm's after conversion
(see `cellssl_jax.convert`).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# timm's registered variants (names without the resolution suffix).
XCIT_VARIANTS: dict[str, dict] = {}
for _p in (16, 8):
    for _name, _dim, _depth, _heads, _eta, _tn in (
        ("nano_12", 128, 12, 4, 1.0, False),
        ("tiny_12", 192, 12, 4, 1.0, True),
        ("tiny_24", 192, 24, 4, 1e-5, True),
        ("small_12", 384, 12, 8, 1.0, True),
        ("small_24", 384, 24, 8, 1e-5, True),
        ("medium_24", 512, 24, 8, 1e-5, True),
        ("large_24", 768, 24, 16, 1e-5, True),
    ):
        XCIT_VARIANTS[f"xcit_{_name}_p{_p}"] = dict(
            patch_size=_p, embed_dim=_dim, depth=_depth, num_heads=_heads, eta=_eta, tokens_norm=_tn
        )
del _p, _name, _dim, _depth, _heads, _eta, _tn

LN_EPS = 1e-6
BN_EPS = 1e-5


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU in torch's own formula, x/2 (1 + erf(x/sqrt 2)).

    jax.nn.gelu(approximate=False) goes through erfc, which is 2.4x slower on XLA:CPU.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.float32(1 / math.sqrt(2)).astype(x.dtype)))


def depthwise_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 depthwise conv, stride 1, zero padding 1, on NHWC; kernel [3, 3, C].

    Written as nine shifted multiply-adds: XLA fuses them into one loop, several times faster
    on CPU than a grouped convolution.
    """
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = None
    for i in range(3):
        for j in range(3):
            term = xp[:, i : i + h, j : j + w, :] * kernel[i, j]
            out = term if out is None else out + term
    return out


class BatchNorm(nn.Module):
    """BatchNorm over all axes but the last, as torch.nn.BatchNorm2d (eps 1e-5, momentum 0.1).

    Training normalises with the biased batch variance and tracks the unbiased one, as torch does;
    with `axis_name` the statistics are averaged across devices (SyncBN). At inference the
    normalisation is a single per-channel scale and shift.
    """

    axis_name: str | None = None
    momentum: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        if train:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(jnp.float32)
            mean = xf.mean(axes)
            mean_sq = jnp.square(xf).mean(axes)
            count = math.prod(x.shape[:-1])
            if self.axis_name is not None:
                mean, mean_sq = jax.lax.pmean((mean, mean_sq), self.axis_name)
                count = count * jax.lax.psum(1, self.axis_name)
            var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
            if not self.is_initializing():
                unbiased = var * count / jnp.maximum(count - 1, 1)
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = scale * jax.lax.rsqrt(var + BN_EPS)
        add = bias - mean * mul
        return (x * mul.astype(self.dtype) + add.astype(self.dtype)).astype(self.dtype)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample (rng stream "dropout")."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


def _layer_norm(dtype: Dtype, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPS, dtype=dtype, name=name)


class Conv3x3s2(nn.Module):
    """3x3 convolution, stride 2, zero padding (1, 1), no bias: side -> ceil(side / 2)."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features))
        kernel = kernel.astype(self.dtype)
        if c == 3 and self.features == 24:
            # XLA:CPU (YNNPACK) picks a ~3x slower kernel for RGB -> 24 channels (xcit_tiny p16's
            # first conv) than for 4 -> 24; a zero fourth channel changes nothing numerically.
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, 1)))
            kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, 1), (0, 0)))
        return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


class ConvPatchEmbed(nn.Module):
    """Stack of 3x3 stride-2 conv + BatchNorm (+ GELU between): 3 convs for p8, 4 for p16."""

    patch_size: int
    embed_dim: int
    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.patch_size == 16:
            widths = [self.embed_dim // 8, self.embed_dim // 4, self.embed_dim // 2, self.embed_dim]
        elif self.patch_size == 8:
            widths = [self.embed_dim // 4, self.embed_dim // 2, self.embed_dim]
        else:
            raise ValueError(f"XCiT patch_size must be 8 or 16, got {self.patch_size}")
        for i, width in enumerate(widths):
            if i > 0:
                x = gelu(x)
            x = Conv3x3s2(width, dtype=self.dtype, name=f"conv_{i}")(x)
            x = BatchNorm(self.bn_axis_name, dtype=self.dtype, name=f"bn_{i}")(x, train)
        return x  # [B, Hp, Wp, C]


def fourier_features(hp: int, wp: int, hidden_dim: int = 32, temperature: float = 10000.0):
    """The fixed sin/cos features of timm's PositionalEncodingFourier: [Hp, Wp, 2 * hidden_dim]."""
    eps, scale = 1e-6, 2 * math.pi
    y = jnp.arange(1, hp + 1, dtype=jnp.float32)
    x = jnp.arange(1, wp + 1, dtype=jnp.float32)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    dim_t = jnp.arange(hidden_dim, dtype=jnp.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / hidden_dim)

    def encode(pos):  # [L] -> [L, hidden_dim], sin/cos interleaved
        p = pos[:, None] / dim_t
        return jnp.stack([jnp.sin(p[:, 0::2]), jnp.cos(p[:, 1::2])], axis=-1).reshape(len(pos), -1)

    pos_y = jnp.broadcast_to(encode(y)[:, None, :], (hp, wp, hidden_dim))
    pos_x = jnp.broadcast_to(encode(x)[None, :, :], (hp, wp, hidden_dim))
    return jnp.concatenate([pos_y, pos_x], axis=-1)


class PositionalEncodingFourier(nn.Module):
    """Fourier features of the actual patch grid, projected to the embedding width (1x1 conv)."""

    dim: int
    hidden_dim: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, hp: int, wp: int) -> jax.Array:
        feats = fourier_features(hp, wp, self.hidden_dim)
        pos = nn.Dense(self.dim, dtype=self.dtype, name="token_projection")(feats)
        return pos.reshape(hp * wp, self.dim)


class Mlp(nn.Module):
    hidden: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        x = gelu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(dim, dtype=self.dtype, name="fc2")(x)


class XCA(nn.Module):
    """Cross-covariance attention: a softmax over channel-by-channel (d x d) maps per head."""

    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, c = x.shape
        h = self.num_heads
        temperature = self.param("temperature", nn.initializers.ones, (h, 1, 1), jnp.float32)
        qkv = nn.Dense(3 * c, dtype=self.dtype, name="qkv")(x).reshape(b, n, 3, h, c // h)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, h, d]
        # normalize(q) @ normalize(k).T == (q.T @ k) / (|q_d| |k_e|): scale the small d x d map
        # instead of two [B, N, C] tensors (|.| over tokens, floored at 1e-12 as F.normalize).
        gram = jnp.einsum("bnhd,bnhe->bhde", q, k, preferred_element_type=jnp.float32)
        q_norm = jnp.sqrt(jnp.sum(jnp.square(q.astype(jnp.float32)), axis=1))  # [B, h, d]
        k_norm = jnp.sqrt(jnp.sum(jnp.square(k.astype(jnp.float32)), axis=1))
        q_norm, k_norm = jnp.maximum(q_norm, 1e-12), jnp.maximum(k_norm, 1e-12)
        inv = 1.0 / (q_norm[..., :, None] * k_norm[..., None, :])
        attn = jax.nn.softmax(gram * inv * temperature, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhde,bnhe->bnhd", attn, v).reshape(b, n, c)
        return nn.Dense(c, dtype=self.dtype, name="proj")(out)


class LPI(nn.Module):
    """Local patch interaction: depthwise 3x3 conv, GELU, BatchNorm, depthwise 3x3 conv."""

    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, hp: int, wp: int, train: bool) -> jax.Array:
        b, n, c = x.shape
        x = x.reshape(b, hp, wp, c)
        for i in (1, 2):
            kernel = self.param(f"conv{i}_kernel", nn.initializers.lecun_normal(), (3, 3, c))
            bias = self.param(f"conv{i}_bias", nn.initializers.zeros, (c,))
            x = depthwise_conv3x3(x, kernel.astype(self.dtype)) + bias.astype(self.dtype)
            if i == 1:
                x = BatchNorm(self.bn_axis_name, dtype=self.dtype, name="bn")(gelu(x), train)
        return x.reshape(b, n, c)


def _gamma(module: nn.Module, name: str, eta: float, dim: int) -> jax.Array:
    return module.param(name, nn.initializers.constant(eta), (dim,), jnp.float32)


class XCABlock(nn.Module):
    num_heads: int
    eta: float
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, hp: int, wp: int, train: bool) -> jax.Array:
        c = x.shape[-1]
        dt = self.dtype
        drop = DropPath(self.drop_path_rate)
        y = XCA(self.num_heads, dtype=dt, name="attn")(_layer_norm(dt, "norm1")(x))
        x = x + drop(_gamma(self, "gamma1", self.eta, c).astype(dt) * y, train)
        # timm (and the official code) apply norm3/LPI before norm2/MLP.
        y = LPI(self.bn_axis_name, dtype=dt, name="local_mp")(
            _layer_norm(dt, "norm3")(x), hp, wp, train
        )
        x = x + drop(_gamma(self, "gamma3", self.eta, c).astype(dt) * y, train)
        y = Mlp(int(c * self.mlp_ratio), dtype=dt, name="mlp")(_layer_norm(dt, "norm2")(x))
        return x + drop(_gamma(self, "gamma2", self.eta, c).astype(dt) * y, train)


class ClassAttention(nn.Module):
    """CaiT class attention: only the CLS token queries all tokens. Returns (cls_out, attn)."""

    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, n, c = x.shape
        h = self.num_heads
        d = c // h
        dense = lambda name: nn.Dense(c, dtype=self.dtype, name=name)  # noqa: E731
        q = dense("q")(x[:, 0]).reshape(b, h, d) * (d**-0.5)
        k = dense("k")(x).reshape(b, n, h, d)
        v = dense("v")(x).reshape(b, n, h, d)
        logits = jnp.einsum("bhd,bnhd->bhn", q, k, preferred_element_type=jnp.float32)
        attn = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhn,bnhd->bhd", attn.astype(self.dtype), v).reshape(b, c)
        return dense("proj")(out), attn


class ClassAttentionBlock(nn.Module):
    num_heads: int
    eta: float
    tokens_norm: bool
    mlp_ratio: float = 4.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = x.shape[-1]
        dt = self.dtype
        x_norm1 = _layer_norm(dt, "norm1")(x)
        cls, attn = ClassAttention(self.num_heads, dtype=dt, name="attn")(x_norm1)
        x_attn = jnp.concatenate([cls[:, None], x_norm1[:, 1:]], axis=1)
        x = x + _gamma(self, "gamma1", self.eta, c).astype(dt) * x_attn
        norm2 = _layer_norm(dt, "norm2")
        if self.tokens_norm:
            x = norm2(x)
        else:
            x = jnp.concatenate([norm2(x[:, :1]), x[:, 1:]], axis=1)
        cls = Mlp(int(c * self.mlp_ratio), dtype=dt, name="mlp")(x[:, 0])
        cls = x[:, 0] + _gamma(self, "gamma2", self.eta, c).astype(dt) * cls
        # The residual adds the patch tokens to themselves (official XCiT and timm do this):
        # irrelevant to the CLS feature, but it is what their patch tokens are.
        return jnp.concatenate([cls[:, None], 2 * x[:, 1:]], axis=1), attn


class XCiT(nn.Module):
    """XCiT backbone. Input: normalised float images [B, H, W, 3] (any H, W; each stride-2 conv
    maps a side to ceil(side / 2)). Output dict: "cls" [B, D] and "patch_tokens" [B, N, D] after
    the final LayerNorm, "cls_attention" [B, heads, Hp, Wp] of the last class-attention block."""

    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 4
    eta: float = 1.0
    tokens_norm: bool = True
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    cls_attn_layers: int = 2
    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        dt = self.dtype
        x = ConvPatchEmbed(self.patch_size, self.embed_dim, self.bn_axis_name, dtype=dt,
                           name="patch_embed")(images.astype(dt), train)
        b, hp, wp, c = x.shape
        x = x.reshape(b, hp * wp, c)
        x = x + PositionalEncodingFourier(c, dtype=dt, name="pos_embed")(hp, wp).astype(dt)
        for i in range(self.depth):
            x = XCABlock(self.num_heads, self.eta, self.mlp_ratio, self.drop_path_rate,
                         self.bn_axis_name, dtype=dt, name=f"blocks_{i}")(x, hp, wp, train)
        cls_token = self.param("cls_token", nn.initializers.truncated_normal(0.02), (1, 1, c))
        x = jnp.concatenate([jnp.broadcast_to(cls_token.astype(dt), (b, 1, c)), x], axis=1)
        attn = None
        for i in range(self.cls_attn_layers):
            x, attn = ClassAttentionBlock(self.num_heads, self.eta, self.tokens_norm,
                                          self.mlp_ratio, dtype=dt, name=f"cls_attn_blocks_{i}")(x)
        x = _layer_norm(dt, "norm")(x)
        out = {"cls": x[:, 0], "patch_tokens": x[:, 1:]}
        if attn is not None:
            out["cls_attention"] = attn[:, :, 1:].reshape(b, self.num_heads, hp, wp)
        return out


def xcit(name: str, **overrides: Any) -> XCiT:
    """Build a registered variant by timm's name (e.g. "xcit_small_12_p8"); kwargs override."""
    if name not in XCIT_VARIANTS:
        raise ValueError(f"unknown XCiT variant {name!r}; known: {', '.join(XCIT_VARIANTS)}")
    return XCiT(**{**XCIT_VARIANTS[name], **overrides})
