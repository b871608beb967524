"""The crop rule (featurize/crop.py): where the encoder reads a cell, against hand-made images."""

import numpy as np
import pytest

from cellssl_jax.featurize.crop import CropRule, otsu, stained_box

PINK = (235, 200, 190)  # red cells / background: blue below green
PURPLE = (90, 50, 140)  # a nucleus: blue far above green


def field(size=360, disc=None, radius=40, dots=()):
    """A pink field with a purple disc centred at `disc` (row, col) and small purple dots."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = PINK
    rows, cols = np.mgrid[:size, :size]
    if disc is not None:
        image[(rows - disc[0]) ** 2 + (cols - disc[1]) ** 2 <= radius**2] = PURPLE
    for r, c in dots:
        image[r : r + 4, c : c + 4] = PURPLE
    return image


def brute_otsu(values):
    """Otsu by definition: the cut of the 256-bin histogram maximising between-class variance."""
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    best, cut = -1.0, None
    for k in range(1, 256):
        w0, w1 = hist[:k].sum(), hist[k:].sum()
        if w0 == 0 or w1 == 0:
            continue
        m0 = (hist[:k] * centres[:k]).sum() / w0
        m1 = (hist[k:] * centres[k:]).sum() / w1
        var = w0 * w1 * (m0 - m1) ** 2
        if var > best:
            best, cut = var, edges[k]
    return cut


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(-20, 8, 3000), rng.normal(90, 15, 500 + 300 * seed)])
    values = np.round(values).astype(np.int16)
    assert otsu(values) == pytest.approx(brute_otsu(values))
    assert -20 < otsu(values) < 90


def test_stained_box_finds_the_central_nucleus_not_a_stray_dot():
    image = field(disc=(170, 190), radius=40, dots=[(10, 10), (340, 300)])
    top, left, bottom, right = stained_box(image)
    step = 360 // 96  # the mask's probe step: the box is exact to within it
    assert abs(top - 130) <= step and abs(bottom - 211) <= step
    assert abs(left - 150) <= step and abs(right - 231) <= step


def test_no_stain_gives_no_box():
    assert stained_box(field()) is None


def test_region_is_the_window_at_the_encoders_scale_centred_on_the_nucleus():
    rule = CropRule(window=192, scale_to=352)
    image = field(disc=(170, 190), radius=30)
    top, left, h, w = rule.region(image)
    assert h == w == round(192 * 360 / 352)  # the cell keeps the scale of a 352-px read
    assert abs(top + h / 2 - 170.5) <= 4 and abs(left + w / 2 - 190.5) <= 4
    out = rule(image)
    assert out.shape == (192, 192, 3) and out.dtype == np.uint8


def test_region_stays_inside_the_image():
    rule = CropRule(window=192, scale_to=352)
    top, left, h, w = rule.region(field(disc=(290, 60), radius=50))  # reaches the middle half
    assert (top, left, h, w) == (360 - 196, 0, 196, 196)


def test_a_stained_box_larger_than_the_window_is_read_whole_and_resized():
    rule = CropRule(window=160, scale_to=352, margin=0.3)
    image = field(disc=(180, 180), radius=120)
    top, left, h, w = rule.region(image)
    assert (top, left, h, w) == (0, 0, 360, 360)  # 240 px grown by 1.6 > 360: all of it
    assert rule(image).shape == (160, 160, 3)


def test_no_stain_reads_the_middle():
    rule = CropRule(window=192, scale_to=352)
    top, left, h, w = rule.region(field())
    assert abs(top + h / 2 - 180) <= 1 and abs(left + w / 2 - 180) <= 1


def test_meta_round_trip_and_errors():
    rule = CropRule(window=192, scale_to=352, margin=0.25, min_stain=30)
    meta = rule.to_meta()
    assert "scale_to" not in meta  # the file's input_size is the scale
    assert CropRule.from_meta(meta, 352) == rule
    with pytest.raises(ValueError, match="unknown crop fields"):
        CropRule.from_meta({**meta, "colour": "red"}, 352)
    with pytest.raises(ValueError, match="input_size"):
        CropRule.from_meta(meta, None)
    with pytest.raises(ValueError, match="unknown crop rule"):
        CropRule(window=192, scale_to=352, rule="otsu")
    with pytest.raises(ValueError, match="window"):
        CropRule(window=400, scale_to=352)
    assert CropRule(window=192, scale_to=352).name != CropRule(window=192, scale_to=352,
                                                                margin=0.2).name
