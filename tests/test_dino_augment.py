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


def _mat(u, size, scale, cfg, perspective_p=0.0):
    """The view's composed map, output pixels -> source (crop, rotation, perspective)."""
    g = A.sample_geometry(u, 30, 30, scale, perspective_p, cfg)
    return g.persp @ g.rot @ A.crop_matrix(g, size)


def _u(**at):
    u = np.full(16, 0.5, np.float32)
    for i, v in at.items():
        u[int(i[1:])] = v
    return jnp.asarray(u)


def test_full_crop_with_horizontal_flip_is_exact():
    cfg = dataclasses.replace(CFG, hflip_p=1.0, vflip_p=0.0, rotation_degrees=0.0,
                              ratio=(1.0, 1.0))
    mat = _mat(_u(), 30, (1.0, 1.0), cfg)
    img = IMAGES[0].astype(np.float32)
    np.testing.assert_allclose(A._warp(jnp.asarray(img), mat, 30), img[:, ::-1], atol=1e-3)


def _quarter_turn(img: np.ndarray) -> np.ndarray:
    """The view at the largest sampled angle, +90 degrees (full crop, no flip or perspective)."""
    cfg = dataclasses.replace(CFG, hflip_p=0.0, vflip_p=0.0, rotation_degrees=90.0,
                              ratio=(1.0, 1.0))
    mat = _mat(_u(u6=1.0), 30, (1.0, 1.0), cfg)
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


# ---------------------------------------------------------------- paper-code options (sparsam)
# The references below are torchvision / PIL, which the paper code (sparsam) and DINO run on PIL
# images; each option is off in the default config and on in the paper_xcit_s12_p8 preset.

PIL_Image = pytest.importorskip("PIL.Image")
CELL = np.random.default_rng(1).integers(1, 256, (64, 64, 3), dtype=np.uint8)  # no 0: 0 = fill
PLAIN = dataclasses.replace(CFG, hflip_p=0.0, vflip_p=0.0, rotation_degrees=0.0, ratio=(1.0, 1.0))


def _black(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) == 0).all(-1)


def _geometry(box, flip=(False, False)) -> A.Geometry:
    return A.Geometry(jnp.asarray(box, jnp.float32), jnp.asarray(flip), jnp.eye(3), jnp.eye(3))


def test_antialiased_crop_is_pils_bilinear_resize_of_the_box():
    img = np.random.default_rng(2).random((40, 40, 3)).astype(np.float32)
    size = 12
    for x0, y0, bw, bh in [(3.0, 5.0, 31.0, 29.0), (2.5, 1.25, 20.5, 33.0), (0.0, 0.0, 40.0, 40.0)]:
        box = (x0, y0, x0 + bw, y0 + bh)
        ref = np.stack([np.asarray(PIL_Image.fromarray(img[..., c], mode="F").resize(
            (size, size), PIL_Image.BILINEAR, box=box)) for c in range(3)], -1)
        g = _geometry([x0, y0, bw, bh])
        ours = A.resample(jnp.asarray(img), g, size, dataclasses.replace(PLAIN, antialias=True))
        np.testing.assert_allclose(ours, ref, atol=1e-5)
        # plain bilinear point sampling aliases the 3x downscale: far from PIL
        plain = A.resample(jnp.asarray(img), g, size, PLAIN)
        assert float(np.abs(np.asarray(plain) - ref).max()) > 0.2
    # flips apply after the resize
    g = _geometry([3.0, 5.0, 31.0, 29.0], (True, True))
    both = A.resample(jnp.asarray(img), g, size, dataclasses.replace(PLAIN, antialias=True))
    unflipped = A.resample(jnp.asarray(img), _geometry([3.0, 5.0, 31.0, 29.0]), size,
                           dataclasses.replace(PLAIN, antialias=True))
    np.testing.assert_allclose(both, np.asarray(unflipped)[::-1, ::-1], atol=1e-6)


@pytest.mark.parametrize("antialias", [False, True])
def test_rotation_uncovers_black_corners_as_torchvision(antialias):
    tf = pytest.importorskip("torchvision.transforms.functional")
    from torchvision.transforms import InterpolationMode

    cfg = dataclasses.replace(PLAIN, rotation_degrees=45.0, fill="black", antialias=antialias)
    g = A.sample_geometry(_u(u6=1.0), 64, 64, (1.0, 1.0), 0.0, cfg)  # +45 degrees, full crop
    ours = A.resample(jnp.asarray(CELL / 255.0, jnp.float32), g, 64, cfg)
    # RandomRotation(180) as sparsam builds it: nearest, fill 0
    ref = np.asarray(tf.rotate(PIL_Image.fromarray(CELL), 45.0,
                               interpolation=InterpolationMode.NEAREST, fill=0))
    assert _black(ref).mean() > 0.1
    assert (_black(ours) != _black(ref)).mean() < 0.01
    reflect = A.resample(jnp.asarray(CELL / 255.0, jnp.float32), g, 64,
                         dataclasses.replace(cfg, fill="reflect"))
    assert not _black(reflect).any()


def test_perspective_uncovers_black_as_torchvision():
    tf = pytest.importorskip("torchvision.transforms.functional")
    cfg = dataclasses.replace(PLAIN, perspective_distortion=0.5, fill="black")
    # corner displacements (multiples of 1/16 of the 16-pixel maximum): integers, as torchvision
    d = np.array([0.5, 0.25, 1.0, 0.0, 0.75, 0.5, 0.0, 1.0])
    u = _u(u15=0.0)
    u = u.at[7:15].set(d)
    g = A.sample_geometry(u, 64, 64, (1.0, 1.0), 1.0, cfg)
    ours = A.resample(jnp.asarray(CELL / 255.0, jnp.float32), g, 64, cfg)
    dx, dy = (16 * d).reshape(4, 2).T.astype(int)
    w = 63  # torchvision's corners are pixel indices
    end = [[dx[0], dy[0]], [w - dx[1], dy[1]], [w - dx[2], w - dy[2]], [dx[3], w - dy[3]]]
    ref = np.asarray(tf.perspective(PIL_Image.fromarray(CELL), [[0, 0], [w, 0], [w, w], [0, w]],
                                    end, fill=0))
    assert _black(ref).mean() > 0.2
    assert (_black(ours) != _black(ref)).mean() < 0.03  # the quadrilateral's edge pixels


def test_perspective_probability_is_per_view():
    cfg = dataclasses.replace(PLAIN, perspective_distortion=1.0, fill="black",
                              global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), jitter_p=0.0,
                              grayscale_p=0.0, solarize_p=0.0, global_size=32, local_size=32,
                              n_local=2)
    image = jnp.full((32, 32, 3), 200, jnp.uint8)
    keys = jax.random.split(jax.random.PRNGKey(3), 8)

    def dark(p):  # per view: mean fraction of near-black pixels over 8 images
        glob, loc = A.batch_multi_crop(keys, jnp.broadcast_to(image, (8, 32, 32, 3)),
                                       dataclasses.replace(cfg, perspective_p=p))
        views = [glob[:8], glob[8:], loc]
        return [float((v < -0.8).all(-1).mean()) for v in views]

    for p in [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]:
        assert [f > 0.03 for f in dark(p)] == [q == 1.0 for q in p], p


def test_blur_with_torchvisions_kernel_size_is_exact():
    tf = pytest.importorskip("torchvision.transforms.functional")
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(4).random((30, 30, 3)).astype(np.float32)
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())
    for sigma in (0.7, 4.0):
        # sparsam: transforms.GaussianBlur(kernel_size=11, sigma=uniform(0.1, 5.0))
        ref = tf.gaussian_blur(t, [11, 11], [sigma, sigma]).numpy().transpose(1, 2, 0)
        ours = A.gaussian_blur(jnp.asarray(img), sigma, 5.0, 11)
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    # without the kernel size, sigma 4 gets 3-sigma taps: a visibly different (wider) blur
    assert float(np.abs(np.asarray(A.gaussian_blur(jnp.asarray(img), 4.0, 5.0)) - ref).max()) > 0.02
    with pytest.raises(ValueError, match="odd"):
        A.AugmentConfig(blur_kernel=10)


def test_prepass_is_torchvisions_grayscale_and_flip():
    tf = pytest.importorskip("torchvision.transforms.functional")
    torch = pytest.importorskip("torch")
    x = jnp.asarray(CELL / 255.0, jnp.float32)
    on = dataclasses.replace(CFG, prepass_grayscale_p=1.0, prepass_hflip_p=1.0)
    out = A.prepass(jax.random.PRNGKey(0), x, on)
    t = torch.from_numpy(np.asarray(x).transpose(2, 0, 1).copy())
    ref = tf.hflip(tf.rgb_to_grayscale(t, 3)).numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(out, ref, atol=1e-3)
    np.testing.assert_array_equal(A.prepass(jax.random.PRNGKey(0), x, CFG), x)  # p 0: identity
    # probabilities: greyscale 0.05, flip 0.5 over 4000 draws
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    paper = dataclasses.replace(CFG, prepass_grayscale_p=0.05, prepass_hflip_p=0.5)
    px = jnp.asarray([[[0.9, 0.1, 0.1], [0.1, 0.1, 0.9]]], jnp.float32)  # red | blue, 1 x 2
    outs = np.asarray(jax.vmap(lambda k: A.prepass(k, px, paper))(keys))
    gray = np.abs(outs[:, 0, 0, 0] - outs[:, 0, 0, 2]) < 1e-6
    flipped = outs[:, 0, 0, 0] < outs[:, 0, 1, 0]  # red channel (grey or not): blue on the left
    assert 0.035 < gray.mean() < 0.065 and 0.46 < flipped.mean() < 0.54


def test_prepass_is_shared_by_every_view():
    cfg = dataclasses.replace(CFG, prepass_grayscale_p=1.0)
    glob, loc = A.multi_crop(jax.random.PRNGKey(5), jnp.asarray(CELL), cfg)
    for v in [*glob, *loc]:  # jitter, greyscale, blur, solarize keep a grey image grey
        np.testing.assert_allclose(v[..., 0], v[..., 2], atol=1e-4)
    glob, _ = A.multi_crop(jax.random.PRNGKey(5), jnp.asarray(CELL), CFG)
    assert float(jnp.abs(glob[..., 0] - glob[..., 2]).max()) > 0.1
    # a sure flip: the views of the flipped image, drawn with the same keys
    flip, _ = A.multi_crop(jax.random.PRNGKey(5), jnp.asarray(CELL),
                           dataclasses.replace(CFG, prepass_hflip_p=1.0))
    ref, _ = A.multi_crop(jax.random.PRNGKey(5), jnp.asarray(CELL[:, ::-1]), CFG)
    np.testing.assert_allclose(flip, ref, atol=1e-5)
