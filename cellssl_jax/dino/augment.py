"""Multi-crop augmentation as pure JAX functions of (PRNG key, uint8 image), vmapped over a batch.

Runs on the accelerator next to the model, so the host only decodes and resizes. The views
follow DINO's DataAugmentationDINO plus the paper's extra geometry: each crop is one projective
warp (perspective, rotation, random resized crop, horizontal/vertical flips, sampled
bilinearly with mirrored borders) followed by colour jitter (random order, p 0.8), grayscale,
Gaussian blur and solarize. Global view 1: blur p 1.0; global view 2: blur p 0.1, solarize
p 0.2; local views: blur p 0.5.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Hyper-parameters of the multi-crop views (defaults: the paper's)."""

    global_size: int = 224
    global_scale: tuple[float, float] = (0.5, 1.0)
    n_local: int = 5
    local_size: int = 96
    local_scale: tuple[float, float] = (0.1, 0.5)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    rotation_degrees: float = 180.0
    perspective_distortion: float = 0.2
    perspective_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.2
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


# ---------------------------------------------------------------- geometry


def _homography(src: jax.Array, dst: jax.Array) -> jax.Array:
    """3x3 H with H @ [src, 1] ∝ [dst, 1] for four point pairs ([4, 2] each)."""
    x, y = src[:, 0], src[:, 1]
    u, v = dst[:, 0], dst[:, 1]
    z, o = jnp.zeros(4), jnp.ones(4)
    rows_u = jnp.stack([x, y, o, z, z, z, -u * x, -u * y], axis=1)
    rows_v = jnp.stack([z, z, z, x, y, o, -v * x, -v * y], axis=1)
    a = jnp.concatenate([rows_u, rows_v], axis=0)
    b = jnp.concatenate([u, v])
    p = jnp.linalg.solve(a, b)
    return jnp.append(p, 1.0).reshape(3, 3)


def _lerp(u: jax.Array, lo: float, hi: float) -> jax.Array:
    return lo + (hi - lo) * u


def _sample_warp(u: jax.Array, h: int, w: int, size: int, scale, cfg: AugmentConfig):
    """Random 3x3 map from output pixel coordinates (continuous, [0, size]) to source ones.

    ``u``: 16 uniform numbers in [0, 1) (one PRNG call per view keeps compilation short).
    """
    # random resized crop (box clipped to the image instead of torchvision's retry loop)
    area = h * w * _lerp(u[0], *scale)
    log_r = _lerp(u[1], math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    bw = jnp.minimum(jnp.sqrt(area * jnp.exp(log_r)), w)
    bh = jnp.minimum(jnp.sqrt(area / jnp.exp(log_r)), h)
    x0 = u[2] * (w - bw)
    y0 = u[3] * (h - bh)
    sx = jnp.where(u[4] < cfg.hflip_p, -1.0, 1.0)
    sy = jnp.where(u[5] < cfg.vflip_p, -1.0, 1.0)
    # output -> (flipped) -> crop box: x_src = x0 + bw * (0.5 + sx * (x / size - 0.5))
    crop = jnp.array(
        [
            [sx * bw / size, 0.0, x0 + bw * (1 - sx) / 2],
            [0.0, sy * bh / size, y0 + bh * (1 - sy) / 2],
            [0.0, 0.0, 1.0],
        ]
    )
    theta = jnp.deg2rad(_lerp(u[6], -cfg.rotation_degrees, cfg.rotation_degrees))
    c, s = jnp.cos(theta), jnp.sin(theta)
    cx, cy = w / 2, h / 2
    rot = jnp.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])
    corners = jnp.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    half = jnp.array([w / 2, h / 2]) * cfg.perspective_distortion
    inward = jnp.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    moved = corners + inward * half * u[7:15].reshape(4, 2)
    persp = _homography(moved, corners)  # distorted-image coords -> source coords
    persp = jnp.where(u[15] < cfg.perspective_p, persp, jnp.eye(3))
    return persp @ rot @ crop


def _reflect(idx: jax.Array, n: int) -> jax.Array:
    if n == 1:
        return jnp.zeros_like(idx)
    period = 2 * (n - 1)
    m = jnp.mod(idx, period)
    return jnp.where(m > n - 1, period - m, m)


def _warp(image: jax.Array, mat: jax.Array, size: int) -> jax.Array:
    """Bilinear sample of ``image`` [H, W, C] at mat @ (output pixel centres), mirrored borders."""
    h, w, ch = image.shape
    g = jnp.arange(size, dtype=jnp.float32) + 0.5
    gx, gy = jnp.meshgrid(g, g)
    pts = jnp.stack([gx, gy, jnp.ones_like(gx)], axis=-1) @ mat.T
    xs = pts[..., 0] / pts[..., 2] - 0.5
    ys = pts[..., 1] / pts[..., 2] - 0.5
    x0, y0 = jnp.floor(xs), jnp.floor(ys)
    wx, wy = (xs - x0)[..., None], (ys - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = image.reshape(h * w, ch)

    def at(yy, xx):
        return flat[_reflect(yy, h) * w + _reflect(xx, w)]

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


# ---------------------------------------------------------------- colour (float RGB in [0, 1])


def _gray(x: jax.Array) -> jax.Array:
    return (x @ jnp.array([0.299, 0.587, 0.114]))[..., None]


def _blend(a: jax.Array, b: jax.Array, f: jax.Array) -> jax.Array:
    return jnp.clip(f * a + (1 - f) * b, 0.0, 1.0)


def _rgb_to_hsv(x: jax.Array) -> jax.Array:
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = jnp.max(x, axis=-1), jnp.min(x, axis=-1)
    d = mx - mn
    safe = jnp.where(d > 0, d, 1.0)
    h = jnp.where(mx == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)
    h = jnp.where(mx == r, (g - b) / safe, h)
    h = jnp.where(d > 0, jnp.mod(h / 6.0, 1.0), 0.0)
    s = jnp.where(mx > 0, d / jnp.where(mx > 0, mx, 1.0), 0.0)
    return jnp.stack([h, s, mx], axis=-1)


def _hsv_to_rgb(x: jax.Array) -> jax.Array:
    h, s, v = x[..., 0], x[..., 1], x[..., 2]
    k = jnp.mod(jnp.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0, 6.0)
    return v[..., None] - (v * s)[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _jitter_ops(f: jax.Array) -> list:
    return [
        lambda y: jnp.clip(y * f[0], 0.0, 1.0),
        lambda y: _blend(y, jnp.mean(_gray(y)), f[1]),
        lambda y: _blend(y, _gray(y), f[2]),
        lambda y: _shift_hue(y, f[3]),
    ]


def _shift_hue(x: jax.Array, delta: jax.Array) -> jax.Array:
    hsv = _rgb_to_hsv(x)
    return _hsv_to_rgb(hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + delta, 1.0)))


def color_jitter(u: jax.Array, x: jax.Array, strength: tuple[float, ...]) -> jax.Array:
    """torchvision ColorJitter(brightness, contrast, saturation, hue): factors in random order.

    ``u``: 8 uniform numbers (4 factors, 4 that sort into the order).
    """
    b, c, s, hue = strength
    lo = jnp.array([max(0.0, 1 - b), max(0.0, 1 - c), max(0.0, 1 - s), -hue])
    hi = jnp.array([1 + b, 1 + c, 1 + s, hue])
    f = lo + (hi - lo) * u[:4]
    order = jnp.argsort(u[4:8])
    for i in range(4):
        x = jax.lax.switch(order[i], _jitter_ops(f), x)
    return x


def gaussian_blur(x: jax.Array, sigma: jax.Array, max_sigma: float) -> jax.Array:
    """Separable Gaussian blur, mirrored borders, taps fixed by ``max_sigma`` (3 sigma radius)."""
    r = int(math.ceil(3 * max_sigma))
    t = jnp.arange(-r, r + 1, dtype=jnp.float32)
    wts = jnp.exp(-0.5 * (t / sigma) ** 2)
    wts = wts / jnp.sum(wts)
    h, w = x.shape[:2]
    p = jnp.pad(x, ((r, r), (0, 0), (0, 0)), mode="reflect")
    x = sum(wts[i] * p[i : i + h] for i in range(2 * r + 1))
    p = jnp.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect")
    return sum(wts[i] * p[:, i : i + w] for i in range(2 * r + 1))


def _view(key, image, size, scale, blur_p, solarize_p, cfg: AugmentConfig) -> jax.Array:
    """One view; ``blur_p``/``solarize_p`` may be traced (one trace serves both global views)."""
    u = jax.random.uniform(key, (29,))
    h, w = image.shape[:2]
    x = _warp(image.astype(jnp.float32) / 255.0, _sample_warp(u[:16], h, w, size, scale, cfg), size)
    x = jnp.where(u[16] < cfg.jitter_p, color_jitter(u[17:25], x, cfg.jitter), x)
    gray = jnp.broadcast_to(_gray(x), x.shape)
    x = jnp.where(u[25] < cfg.grayscale_p, gray, x)
    blurred = gaussian_blur(x, _lerp(u[26], *cfg.blur_sigma), cfg.blur_sigma[1])
    x = jnp.where(u[27] < blur_p, blurred, x)
    solar = jnp.where(x >= 128 / 255, 1.0 - x, x)
    x = jnp.where(u[28] < solarize_p, solar, x)
    return (x - jnp.array(cfg.mean)) / jnp.array(cfg.std)


def multi_crop(key: jax.Array, image: jax.Array, cfg: AugmentConfig) -> tuple[jax.Array, jax.Array]:
    """One uint8 image [H, W, 3] -> (global views [2, G, G, 3], local views [n_local, L, L, 3]).

    Outputs are normalised with ``cfg.mean``/``cfg.std`` (pixel space [0, 1]).
    """
    keys = jax.random.split(key, 2 + cfg.n_local)
    blur_p = jnp.array([1.0, 0.1])
    solarize_p = jnp.array([0.0, cfg.solarize_p])
    glob = jax.vmap(
        lambda kk, bp, sp: _view(kk, image, cfg.global_size, cfg.global_scale, bp, sp, cfg)
    )(keys[:2], blur_p, solarize_p)
    if cfg.n_local == 0:
        return glob, jnp.zeros((0, cfg.local_size, cfg.local_size, 3), glob.dtype)
    loc = jax.vmap(lambda kk: _view(kk, image, cfg.local_size, cfg.local_scale, 0.5, 0.0, cfg))(
        keys[2:]
    )
    return glob, loc


def batch_multi_crop(
    keys: jax.Array, images: jax.Array, cfg: AugmentConfig
) -> tuple[jax.Array, jax.Array]:
    """Per-sample keys [B] and uint8 images [B, H, W, 3] -> views grouped by view then sample:
    globals [2 * B, G, G, 3] and locals [n_local * B, L, L, 3] (DINO's crop order)."""
    glob, loc = jax.vmap(lambda k, im: multi_crop(k, im, cfg))(keys, images)
    glob = jnp.swapaxes(glob, 0, 1).reshape(-1, *glob.shape[2:])
    loc = jnp.swapaxes(loc, 0, 1).reshape(-1, *loc.shape[2:])
    return glob, loc
