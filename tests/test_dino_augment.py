"""Multi-crop augmentation: shapes, range, determinism, and exact geometry/colour cases."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cellssl_jax.dino import augment as A

CFG = A.AugmentConfig(global_size=24, local_size=12, n_local=3)
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 30, 30, 3), dtype=np.uint8)


def test_batch_views_shapes_range_and_determinism():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    glob, loc = A.batch_multi_crop(keys, jnp.asarray(IMAGES), CFG)
    assert glob.shape == (2 * 2, 24, 24, 3) and loc.shape == (3 * 2, 12, 12, 3)
    # [0, 1] pixels normalised with mean = std = 0.5 -> [-1, 1]
    assert float(glob.min()) >= -1 - 1e-5 and float(glob.max()) <= 1 + 1e-5
    again, _ = A.batch_multi_crop(keys, jnp.asarray(IMAGES), CFG)
    np.testing.assert_array_equal(glob, again)
    other, _ = A.batch_multi_crop(jax.random.split(jax.random.PRNGKey(1), 2),
                                  jnp.asarray(IMAGES), CFG)
    assert float(jnp.abs(glob - other).mean()) > 0.05
    # view-major order: the two global views of sample 0 are rows 0 and 2, and differ
    assert float(jnp.abs(glob[0] - glob[2]).mean()) > 0.05


def _u(**at):
    u = np.full(16, 0.5, np.float32)
    for i, v in at.items():
        u[int(i[1:])] = v
    return jnp.asarray(u)


def test_full_crop_with_horizontal_flip_is_exact():
    cfg = dataclasses.replace(CFG, hflip_p=1.0, vflip_p=0.0, rotation_degrees=0.0,
                              perspective_p=0.0, ratio=(1.0, 1.0))
    mat = A._sample_warp(_u(), 30, 30, 30, (1.0, 1.0), cfg)
    img = IMAGES[0].astype(np.float32)
    np.testing.assert_allclose(A._warp(jnp.asarray(img), mat, 30), img[:, ::-1], atol=1e-3)


def _quarter_turn(img: np.ndarray) -> np.ndarray:
    """The view at the largest sampled angle, +90 degrees (full crop, no flip or perspective)."""
    cfg = dataclasses.replace(CFG, hflip_p=0.0, vflip_p=0.0, rotation_degrees=90.0,
                              perspective_p=0.0, ratio=(1.0, 1.0))
    mat = A._sample_warp(_u(u6=1.0), 30, 30, 30, (1.0, 1.0), cfg)
    return np.asarray(A._warp(jnp.asarray(img), mat, 30))


def test_quarter_turn_rotation_is_exact():
    # a positive angle turns the cell counter-clockwise as displayed: np.rot90 with k=1
    img = IMAGES[0].astype(np.float32)
    np.testing.assert_allclose(_quarter_turn(img), np.rot90(img, 1), atol=1e-2)


def test_rotation_direction_is_torchvisions():
    tf = pytest.importorskip("torchvision.transforms.functional")
    torch = pytest.importorskip("torch")
    img = IMAGES[0].astype(np.float32)
    # torchvision's rotate (RandomRotation's angle): positive angle = counter-clockwise
    ref = tf.rotate(torch.from_numpy(img.transpose(2, 0, 1).copy()), 90.0).numpy()
    np.testing.assert_allclose(_quarter_turn(img), ref.transpose(1, 2, 0), atol=1e-2)


def test_homography_maps_the_four_points():
    src = jnp.array([[0.0, 0.0], [10.0, 1.0], [9.0, 8.0], [1.0, 10.0]])
    dst = jnp.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    h = np.asarray(A._homography(src, dst))
    p = np.c_[np.asarray(src), np.ones(4)] @ h.T
    np.testing.assert_allclose(p[:, :2] / p[:, 2:], dst, atol=1e-3)


def test_colour_jitter_identity_and_grayscale():
    x = jnp.asarray(IMAGES[0] / 255.0, jnp.float32)
    u = jnp.asarray([0.5, 0.5, 0.5, 0.5, 0.1, 0.4, 0.2, 0.3])  # factors (1, 1, 1, hue 0)
    np.testing.assert_allclose(A.color_jitter(u, x, CFG.jitter), x, atol=1e-5)
    sat0 = A._blend(x, A._gray(x), 0.0)  # saturation 0 == grayscale
    np.testing.assert_allclose(sat0[..., 0], sat0[..., 2], atol=1e-6)
    np.testing.assert_allclose(A._hsv_to_rgb(A._rgb_to_hsv(x)), x, atol=1e-5)


def test_blur_keeps_constant_images_and_smooths_noise():
    flat = jnp.full((12, 12, 3), 0.3)
    np.testing.assert_allclose(A.gaussian_blur(flat, 1.5, 2.0), flat, atol=1e-6)
    noise = jnp.asarray(IMAGES[0] / 255.0, jnp.float32)
    assert float(A.gaussian_blur(noise, 2.0, 2.0).std()) < 0.5 * float(noise.std())
