"""Cell-shape features (featurize/cellshape.py): hand-made cells with known measures, and the
shape measures against scikit-image's region properties (an independent implementation)."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as sk_label
from skimage.measure import regionprops

from cellssl_jax.featurize import cellshape
from cellssl_jax.featurize.cellshape import (
    DIM,
    LBP_CODES,
    NAMES,
    RINGS,
    cell_measures,
    cell_shape,
    lbp_codes,
    nucleus_mask,
    shape_measures,
)

PINK = (235, 200, 190)  # red cells / background: blue below green
PURPLE = (90, 50, 140)  # a nucleus: blue far above green
ORANGE = (230, 140, 100)  # eosinophil granules


def window(masks_colours, side=cellshape.WINDOW):
    """A pink window painted with (boolean mask, colour) pairs in order."""
    image = np.empty((side, side, 3), np.uint8)
    image[:] = PINK
    for mask, colour in masks_colours:
        image[mask] = colour
    return image


def disc(centre, radius, side=cellshape.WINDOW):
    rows, cols = np.mgrid[:side, :side]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def measure(values, name):
    return float(values[NAMES.index(name)])


def test_names_and_dimension():
    assert len(NAMES) == DIM == len(set(NAMES)) and cellshape.NAME == f"cellshape_{DIM}"


def test_rectangle_hand_measures():
    nucleus = np.zeros((100, 100), bool)
    nucleus[30:50, 20:60] = True  # 20 x 40 px
    m = dict(zip(cellshape.SHAPE_NAMES, shape_measures(nucleus), strict=True))
    assert m["nucleus_area"] == pytest.approx(800 / 10_000)
    assert m["nucleus_parts"] == 1 and m["nucleus_lobes"] == 1
    assert m["nucleus_solidity"] == pytest.approx(1.0)  # convex: its hull is itself
    assert m["nucleus_perimeter2_area"] == pytest.approx((2 * (20 + 40) - 4) ** 2 / 800)
    # a uniform a x b rectangle: variances (a^2 - 1) / 12 and (b^2 - 1) / 12 (ddof 1 aside)
    assert m["nucleus_axes_ratio"] == pytest.approx(np.sqrt((20**2 - 1) / (40**2 - 1)))
    assert m["nucleus_fill"] == pytest.approx(1.0)


def test_l_shape_solidity_and_holes():
    k = 30
    nucleus = np.zeros((100, 100), bool)
    nucleus[10 : 10 + 2 * k, 10 : 10 + 2 * k] = True
    nucleus[10 + k : 10 + 2 * k, 10 + k : 10 + 2 * k] = False  # an L of three k x k squares
    m = dict(zip(cellshape.SHAPE_NAMES, shape_measures(nucleus), strict=True))
    assert m["nucleus_solidity"] == pytest.approx(3 / 3.5)  # hull: the square less a half
    ring = disc((50, 50), 30, 100) & ~disc((50, 50), 12, 100)  # a ring: its hole fills
    m = dict(zip(cellshape.SHAPE_NAMES, shape_measures(ring), strict=True))
    assert m["nucleus_fill"] == pytest.approx(ring.sum() / disc((50, 50), 30, 100).sum())


@pytest.mark.parametrize("seed", range(4))
def test_shape_matches_scikit_image(seed):
    """Axes, parts and lobes of random blobs equal scikit-image's (a different code base)."""
    rng = np.random.default_rng(seed)
    nucleus = np.zeros((120, 120), bool)
    for _ in range(3):
        c, r = rng.integers(35, 85, 2), rng.integers(8, 20)
        nucleus |= disc(c, r, 120)
    nucleus[rng.integers(0, 120, 40), rng.integers(0, 120, 40)] ^= True  # noise, holes
    m = dict(zip(cellshape.SHAPE_NAMES, shape_measures(nucleus), strict=True))
    (props,) = regionprops(nucleus.astype(np.uint8))
    assert m["nucleus_axes_ratio"] == pytest.approx(
        props.axis_minor_length / props.axis_major_length, rel=1e-9)
    n = nucleus.sum()  # skimage's axis = 4 x the biased std; ours the unbiased std / side
    assert m["nucleus_major_axis"] == pytest.approx(
        props.axis_major_length / 4 * np.sqrt(n / (n - 1)) / 120, rel=1e-9)
    assert m["nucleus_area"] * nucleus.size == props.area
    assert m["nucleus_parts"] == sk_label(nucleus, connectivity=1).max()
    assert m["nucleus_solidity"] <= 1.0 and props.solidity == pytest.approx(
        m["nucleus_solidity"], abs=0.05)  # skimage counts hull pixels, we take its area


def test_nucleus_is_the_central_stained_part():
    central, aside = disc((96, 96), 25), disc((20, 20), 10)
    image = window([(central, PURPLE), (aside, PURPLE)])
    assert (nucleus_mask(image) == central).all()
    assert not nucleus_mask(window([(aside, PURPLE)])).any()  # nothing stained mid-window


def test_rings_read_the_cytoplasm():
    """An orange ring around a purple nucleus: the inner ring is orange, the outer pink."""
    nucleus = disc((96, 96), 30)
    # the rings are RINGS px of 4-connected growth (diamond steps), not Euclidean discs
    cytoplasm = ndimage.binary_dilation(nucleus, iterations=RINGS[0])
    m = cell_measures(window([(cytoplasm, ORANGE), (nucleus, PURPLE)]))
    for colour, region in ((PURPLE, "nucleus"), (ORANGE, "ring1"), (PINK, "ring2")):
        got = [measure(m, f"{region}_{c}") for c in "rgb"]
        assert got == pytest.approx(colour), region
        assert measure(m, f"{region}_r_std") == pytest.approx(0.0)
    assert measure(m, "nucleus_dark") == 1.0 and measure(m, "ring2_dark") == 0.0
    assert measure(m, "nucleus_axes_ratio") == pytest.approx(1.0, abs=0.02)


def test_a_lobed_nucleus_counts_its_lobes():
    lobes = [disc((96, c), 14) for c in (56, 88, 120)]
    joined = lobes[0] | lobes[1] | lobes[2]
    joined[94:98, 56:120] = True  # thin strands between the lobes
    m = cell_measures(window([(joined, PURPLE)]))
    assert measure(m, "nucleus_parts") == 1 and measure(m, "nucleus_lobes") == 3


def brute_lbp(grey, radius):
    """Uniform LBP by its definition, pixel by pixel (Ojala et al. 2002, square neighbours)."""
    h, w = grey.shape
    circle = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    out = np.zeros((h, w), int)
    for i in range(h):
        for j in range(w):
            bits = []
            for dr, dc in circle:
                r = min(max(i + dr * radius, 0), h - 1)  # edges replicated
                c = min(max(j + dc * radius, 0), w - 1)
                bits.append(int(grey[r, c] >= grey[i, j]))
            changes = sum(bits[k] != bits[k - 1] for k in range(8))
            out[i, j] = sum(bits) if changes <= 2 else 9
    return out


@pytest.mark.parametrize("radius", [1, 2])
def test_lbp_matches_its_definition_and_hand_cases(radius):
    grey = np.random.default_rng(radius).integers(0, 4, (23, 19)).astype(np.float32)
    np.testing.assert_array_equal(lbp_codes(grey, radius), brute_lbp(grey, radius))
    assert (lbp_codes(np.full((5, 5), 7.0), radius) == 8).all()  # flat: every neighbour >=
    spot = np.zeros((9, 9))
    spot[4, 4] = 1.0
    assert lbp_codes(spot, radius)[4, 4] == 0  # a bright spot: no neighbour as bright
    edge = np.zeros((9, 9))
    edge[:, 5:] = 1.0  # a step: left of it every neighbour is >=; on it 5 in one run
    assert lbp_codes(edge, 1)[4, 4] == 8 and lbp_codes(edge, 1)[4, 5] == 5


def test_texture_histograms_are_shares_of_each_region():
    nucleus = disc((96, 96), 30)
    rng = np.random.default_rng(0)
    image = window([(nucleus, PURPLE)])
    image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255)
    m = cell_measures(image.astype(np.uint8))
    for prefix, bins in [(f"{r}_grey", 8) for r in cellshape.REGIONS] + [
            ("nucleus_stain", 8)] + [(f"{r}_lbp{k}_", LBP_CODES) for k in cellshape.LBP_RADII
                                     for r in cellshape.REGIONS]:
        total = sum(measure(m, f"{prefix}{k}") for k in range(bins))
        assert total == pytest.approx(1.0, abs=1e-5), prefix


def test_any_image_size_same_window_and_bad_input():
    """An image at another scale is measured in the same window (area share kept)."""
    small = window([(disc((60, 60), 20, 120), PURPLE)], side=120)
    big = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)  # the same cell, 3x the pixels
    a, b = cell_shape(small), cell_shape(big)
    assert a.shape == (DIM,) and a.dtype == np.float32
    assert measure(a, "nucleus_area") == pytest.approx(measure(b, "nucleus_area"), rel=0.05)
    assert not cell_shape(np.full((50, 50, 3), 200, np.uint8)).any()  # no stain: zeros
    with pytest.raises(ValueError, match="uint8"):
        cell_shape(np.zeros((50, 50, 3), np.float32))
