"""Multi-crop augmentation as pure JAX functions of (PRNG key, uint8 image), vmapped over a batch.

Runs on the accelerator next to the model, so the host only decodes and resizes. The views
follow DINO's DataAugmentationDINO plus the paper code's extra geometry (sparsam): an optional
whole-image pre-pass (greyscale, horizontal flip) shared by all views, then per view a
perspective distortion, a rotation, a random resized crop with horizontal/vertical flips (one
projective warp sampled bilinearly, or with ``antialias`` a warp at the image's own size then a
PIL-like resize of the crop box), colour jitter (random order, p 0.8), grayscale, Gaussian blur
and solarize. Global view 1: blur p 1.0; global view 2: blur p 0.1, solarize; local views: blur
p 0.5. docs/DESIGN.md ("Paper code vs DINO") says which preset sets what.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cellssl_jax.models.pixels import PAPER_MEAN, PAPER_STD


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Hyper-parameters of the multi-crop views (the fields of ``config.augment``)."""

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
    perspective_p: tuple[float, float, float] = (0.5, 0.5, 0.5)  # global 1, global 2, local
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0  # taps (odd); 0: 3 sigma each side of blur_sigma's maximum
    solarize_p: float = 0.2
    fill: str = "reflect"  # what rotation/perspective uncover: "reflect" (mirror) | "black"
    prepass_grayscale_p: float = 0.0  # once per image, before the crops
    prepass_hflip_p: float = 0.0
    antialias: bool = False  # crops resampled as PIL does (triangle widened when downscaling)
    mean: tuple[float, float, float] = PAPER_MEAN
    std: tuple[float, float, float] = PAPER_STD

    def __post_init__(self):
        if self.fill not in ("reflect", "black"):
            raise ValueError(f"augment.fill must be 'reflect' or 'black', got {self.fill!r}")
        if len(self.perspective_p) != 3:
            raise ValueError(
                "augment.perspective_p is (global view 1, global view 2, local views), got "
                f"{self.perspective_p!r}"
            )
        if self.blur_kernel and self.blur_kernel % 2 == 0:
            raise ValueError(f"augment.blur_kernel must be odd or 0, got {self.blur_kernel}")


# ---------------------------------------------------------------- geometry


class Geometry(NamedTuple):
    """One view's random geometry, in sparsam's order: perspective, rotation, crop, flips."""

    box: jax.Array  # (x0, y0, width, height) of the crop in the rotated image
    flip: jax.Array  # (horizontal, vertical), booleans
    rot: jax.Array  # 3x3: rotated-image coordinates -> perspective-image coordinates
    persp: jax.Array  # 3x3: perspective-image coordinates -> source coordinates


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


def sample_geometry(
    u: jax.Array, h: int, w: int, scale, perspective_p, cfg: AugmentConfig
) -> Geometry:
    """A view's geometry from 16 uniform numbers in [0, 1) (one PRNG call per view keeps
    compilation short); ``perspective_p`` is this view's (may be traced)."""
    # random resized crop (box clipped to the image instead of torchvision's retry loop)
    area = h * w * _lerp(u[0], *scale)
    log_r = _lerp(u[1], math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    bw = jnp.minimum(jnp.sqrt(area * jnp.exp(log_r)), w)
    bh = jnp.minimum(jnp.sqrt(area / jnp.exp(log_r)), h)
    box = jnp.stack([u[2] * (w - bw), u[3] * (h - bh), bw, bh])
    flip = jnp.stack([u[4] < cfg.hflip_p, u[5] < cfg.vflip_p])
    theta = jnp.deg2rad(_lerp(u[6], -cfg.rotation_degrees, cfg.rotation_degrees))
    c, s = jnp.cos(theta), jnp.sin(theta)
    cx, cy = w / 2, h / 2
    rot = jnp.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])
    # torchvision's RandomPerspective: each corner moves inwards by up to distortion * half side
    corners = jnp.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    half = jnp.array([w / 2, h / 2]) * cfg.perspective_distortion
    inward = jnp.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    moved = corners + inward * half * u[7:15].reshape(4, 2)
    persp = _homography(moved, corners)  # distorted-image coords -> source coords
    persp = jnp.where(u[15] < perspective_p, persp, jnp.eye(3))
    return Geometry(box, flip, rot, persp)


def crop_matrix(g: Geometry, size: int) -> jax.Array:
    """3x3 map from output pixel coordinates (continuous, [0, size]) to rotated-image ones."""
    x0, y0, bw, bh = g.box
    sx = jnp.where(g.flip[0], -1.0, 1.0)
    sy = jnp.where(g.flip[1], -1.0, 1.0)
    # output -> (flipped) -> crop box: x_src = x0 + bw * (0.5 + sx * (x / size - 0.5))
    return jnp.array(
        [
            [sx * bw / size, 0.0, x0 + bw * (1 - sx) / 2],
            [0.0, sy * bh / size, y0 + bh * (1 - sy) / 2],
            [0.0, 0.0, 1.0],
        ]
    )


def _reflect(idx: jax.Array, n: int) -> jax.Array:
    if n == 1:
        return jnp.zeros_like(idx)
    period = 2 * (n - 1)
    m = jnp.mod(idx, period)
    return jnp.where(m > n - 1, period - m, m)


def _pixel_centres(size: int | tuple[int, int]) -> jax.Array:
    """Homogeneous output pixel centres [H, W, 3] (continuous coordinates, x first)."""
    oh, ow = (size, size) if isinstance(size, int) else size
    gx, gy = jnp.meshgrid(
        jnp.arange(ow, dtype=jnp.float32) + 0.5, jnp.arange(oh, dtype=jnp.float32) + 0.5
    )
    return jnp.stack([gx, gy, jnp.ones_like(gx)], axis=-1)


def _inside(pts: jax.Array, mat: jax.Array, h: int, w: int) -> jax.Array:
    q = pts @ mat.T
    x, y = q[..., 0] / q[..., 2], q[..., 1] / q[..., 2]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


def _warp(
    image: jax.Array, mat: jax.Array, size: int | tuple[int, int], visible: jax.Array | None = None
) -> jax.Array:
    """Bilinear sample of ``image`` [H, W, C] at mat @ (output pixel centres), mirrored borders;
    pixels where ``visible`` is False are 0 (torchvision's fill)."""
    h, w, ch = image.shape
    pts = _pixel_centres(size) @ mat.T
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
    out = top * (1 - wy) + bottom * wy
    return out if visible is None else jnp.where(visible[..., None], out, 0.0)


def _distorts(cfg: AugmentConfig) -> bool:
    return cfg.rotation_degrees != 0 or (
        cfg.perspective_distortion != 0 and any(p > 0 for p in cfg.perspective_p)
    )


def resample(x: jax.Array, g: Geometry, size: int, cfg: AugmentConfig) -> jax.Array:
    """The geometric part of a view: float image [H, W, C] -> [size, size, C].

    Without ``antialias``: one warp (perspective, rotation and crop composed), bilinear at the
    output's pixels. With it, as the paper code and DINO do on PIL images: the perspective and
    rotation at the image's own size, then the crop box resized with a triangle filter widened
    by the downscale factor (PIL's BILINEAR resize). With ``fill == "black"`` a pixel is 0
    where the rotation or the perspective has nothing to show (torchvision's fill=0).
    """
    h, w = x.shape[:2]
    black = cfg.fill == "black"

    def visible(pre: jax.Array, shape) -> jax.Array | None:
        if not black:
            return None
        pts, to_persp = _pixel_centres(shape), g.rot @ pre
        return _inside(pts, to_persp, h, w) & _inside(pts, g.persp @ to_persp, h, w)

    if not cfg.antialias:
        crop = crop_matrix(g, size)
        return _warp(x, g.persp @ g.rot @ crop, size, visible(crop, size))
    if _distorts(cfg):
        eye = jnp.eye(3)
        x = _warp(x, g.persp @ g.rot, (h, w), visible(eye, (h, w)))
    x0, y0, bw, bh = g.box
    x = jax.image.scale_and_translate(
        x,
        (size, size, x.shape[2]),
        (0, 1),
        jnp.stack([size / bh, size / bw]),
        jnp.stack([-y0 * size / bh, -x0 * size / bw]),
        method="linear",
        antialias=True,
    )
    x = jnp.where(g.flip[0], x[:, ::-1], x)
    return jnp.where(g.flip[1], x[::-1], x)


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


def gaussian_blur(x: jax.Array, sigma: jax.Array, max_sigma: float, kernel: int = 0) -> jax.Array:
    """Separable Gaussian blur, mirrored borders (torchvision's GaussianBlur). Taps are static:
    ``kernel`` of them, or with 0 enough for 3 ``max_sigma`` each side."""
    r = kernel // 2 if kernel else int(math.ceil(3 * max_sigma))
    t = jnp.arange(-r, r + 1, dtype=jnp.float32)
    wts = jnp.exp(-0.5 * (t / sigma) ** 2)
    wts = wts / jnp.sum(wts)
    h, w = x.shape[:2]
    p = jnp.pad(x, ((r, r), (0, 0), (0, 0)), mode="reflect")
    x = sum(wts[i] * p[i : i + h] for i in range(2 * r + 1))
    p = jnp.pad(x, ((0, 0), (r, r), (0, 0)), mode="reflect")
    return sum(wts[i] * p[:, i : i + w] for i in range(2 * r + 1))


def prepass(key: jax.Array, x: jax.Array, cfg: AugmentConfig) -> jax.Array:
    """The paper code's whole-image greyscale / horizontal flip on a float image [H, W, 3],
    drawn once per image so that every view of it shares them."""
    u = jax.random.uniform(key, (2,))
    x = jnp.where(u[0] < cfg.prepass_grayscale_p, jnp.broadcast_to(_gray(x), x.shape), x)
    return jnp.where(u[1] < cfg.prepass_hflip_p, x[:, ::-1], x)


def _view(key, x, size, scale, blur_p, solarize_p, perspective_p, cfg: AugmentConfig) -> jax.Array:
    """One view of a float image; the per-view probabilities may be traced (one trace serves
    both global views)."""
    u = jax.random.uniform(key, (29,))
    h, w = x.shape[:2]
    x = resample(x, sample_geometry(u[:16], h, w, scale, perspective_p, cfg), size, cfg)
    x = jnp.where(u[16] < cfg.jitter_p, color_jitter(u[17:25], x, cfg.jitter), x)
    gray = jnp.broadcast_to(_gray(x), x.shape)
    x = jnp.where(u[25] < cfg.grayscale_p, gray, x)
    sigma = _lerp(u[26], *cfg.blur_sigma)
    blurred = gaussian_blur(x, sigma, cfg.blur_sigma[1], cfg.blur_kernel)
    x = jnp.where(u[27] < blur_p, blurred, x)
    solar = jnp.where(x >= 128 / 255, 1.0 - x, x)
    x = jnp.where(u[28] < solarize_p, solar, x)
    return (x - jnp.array(cfg.mean)) / jnp.array(cfg.std)


def multi_crop(key: jax.Array, image: jax.Array, cfg: AugmentConfig) -> tuple[jax.Array, jax.Array]:
    """One uint8 image [H, W, 3] -> (global views [2, G, G, 3], local views [n_local, L, L, 3]).

    Outputs are normalised with ``cfg.mean``/``cfg.std`` (pixel space [0, 1]).
    """
    keys = jax.random.split(key, 2 + cfg.n_local)
    x = image.astype(jnp.float32) / 255.0
    if cfg.prepass_grayscale_p > 0 or cfg.prepass_hflip_p > 0:
        # fold_in leaves the views' keys as they are without a pre-pass
        x = prepass(jax.random.fold_in(key, 2 + cfg.n_local), x, cfg)
    blur_p = jnp.array([1.0, 0.1])
    solarize_p = jnp.array([0.0, cfg.solarize_p])
    persp_p = jnp.array(cfg.perspective_p[:2])
    glob = jax.vmap(
        lambda kk, bp, sp, pp: _view(kk, x, cfg.global_size, cfg.global_scale, bp, sp, pp, cfg)
    )(keys[:2], blur_p, solarize_p, persp_p)
    if cfg.n_local == 0:
        return glob, jnp.zeros((0, cfg.local_size, cfg.local_size, 3), glob.dtype)
    loc = jax.vmap(
        lambda kk: _view(
            kk, x, cfg.local_size, cfg.local_scale, 0.5, 0.0, cfg.perspective_p[2], cfg
        )
    )(keys[2:])
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
