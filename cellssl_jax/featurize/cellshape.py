"""Cell-shape features: what a haematologist looks at, measured from the stain.

The nucleus is the stained region (blue well above green, the crop rule's threshold) nearest
the middle of the cell's window; its shape separates the types a colour histogram mixes up
(a neutrophil's lobes, a lymphocyte's round nucleus, a monocyte's folded one), and the colour
and texture of the nucleus (chromatin: dense, lacy) and of two rings around it read the
cytoplasm (an eosinophil's orange granules, a basophil's dark ones). Texture is read as
grey-level and stain histograms and uniform local binary patterns (Ojala et al. 2002, 8
neighbours on the square of radius 1 and 2). With few labels per class they add what the
encoder's feature lacks: on the PBC validation part, beside the encoder and colour
histograms, `classify`'s default method gains 4-5 points at 5 labels per class and 1-5 at 20
(docs/LAB_COUNT.md, third pass).

Every image is measured in the same window whatever its native size: the crop rule's
WINDOW-px square around the cell at the scale of the image read at SCALE x SCALE (the bundled
encoder's read), so pixel distances mean the same on every scanner's images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from cellssl_jax.featurize.crop import CropRule, otsu

SCALE, WINDOW = 352, 192  # as the bundled encoder reads a cell (its file's crop rule)
WINDOW_RULE = CropRule(window=WINDOW, scale_to=SCALE)
JOIN = 3  # dilation (px) joining a nucleus's lobes when picking the central stained part
LOBE_EROSION = 3  # erosion (px) that separates lobes joined by thin strands
RINGS = (8, 18)  # the cytoplasm rings: 0-8 and 8-18 px outside the filled nucleus
DARK = 100  # grey level below which a pixel counts as dark (chromatin, basophil granules)
GREY_BINS = 8  # grey-level histogram of each region, over 0-255
STAIN_BINS, STAIN_MAX = 8, 160  # the nucleus's B - G histogram, over 0-STAIN_MAX
LBP_RADII = (1, 2)
LBP_CODES = 10  # uniform patterns of 8 neighbours: 0-8 ones in one run, 9 for the rest

# area: share of the window; parts: connected pieces; lobes: pieces after LOBE_EROSION;
# solidity: area / its convex hull's; perimeter2_area: boundary pixels^2 / area; axes_ratio:
# minor / major principal axis; major_axis: std along the major axis / window side; fill:
# area / its holes filled (a lacy chromatin has holes)
SHAPE_NAMES = ("nucleus_area", "nucleus_parts", "nucleus_lobes", "nucleus_solidity",
               "nucleus_perimeter2_area", "nucleus_axes_ratio", "nucleus_major_axis",
               "nucleus_fill")
REGION_NAMES = ("r", "g", "b", "r_std", "g_std", "b_std", "grey_std", "laplacian", "dark")
REGIONS = ("nucleus", "ring1", "ring2")
TEXTURE_NAMES = (
    tuple(f"{r}_grey{k}" for r in REGIONS for k in range(GREY_BINS))
    + tuple(f"nucleus_stain{k}" for k in range(STAIN_BINS))
    + tuple(f"{r}_lbp{radius}_{c}" for radius in LBP_RADII for r in REGIONS
            for c in range(LBP_CODES)))
NAMES = (SHAPE_NAMES + tuple(f"{r}_{m}" for r in REGIONS for m in REGION_NAMES)
         + TEXTURE_NAMES)
DIM = len(NAMES)
NAME = f"cellshape_{DIM}"
NO_NUCLEUS = ("no stained nucleus near the middle (blue above green by "
              f"{WINDOW_RULE.min_stain} and Otsu's threshold nowhere): its cell-shape values "
              "are 0; a stain other than May-Grünwald-Giemsa / Wright, or no cell in the middle?")


def nucleus_mask(window: np.ndarray, min_stain: int = WINDOW_RULE.min_stain) -> np.ndarray:
    """The stained pixels of the part nearest the middle (its lobes joined by JOIN px); all
    False when nothing in the central half is stained."""
    v = window.astype(np.int16)
    stain = v[..., 2] - v[..., 1]
    mask = stain > max(min_stain, otsu(stain))
    h, w = mask.shape
    labels, count = ndimage.label(ndimage.binary_dilation(mask, iterations=JOIN))
    mid = labels[h // 4 : h - h // 4, w // 4 : w - w // 4]
    central = np.unique(mid[mid > 0])
    if len(central) == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels[mask], minlength=count + 1)  # stained pixels per part
    return mask & (labels == central[np.argmax(sizes[central])])


def filled_nucleus(nucleus: np.ndarray) -> np.ndarray:
    """The nucleus closed (4 px) and its holes filled: what the rings grow from."""
    return ndimage.binary_fill_holes(ndimage.binary_closing(nucleus, iterations=4))


def shape_measures(nucleus: np.ndarray, filled: np.ndarray | None = None) -> np.ndarray:
    """SHAPE_NAMES of a boolean nucleus mask (its window's side is the length unit);
    `filled`: its `filled_nucleus`, when the caller has it."""
    side = nucleus.shape[0]
    area = int(nucleus.sum())
    rows, cols = np.nonzero(nucleus)
    edge = nucleus ^ ndimage.binary_erosion(nucleus)  # its boundary pixels
    er, ec = np.nonzero(edge)
    corners = np.concatenate([np.stack([er + dr, ec + dc], axis=1)
                              for dr in (0, 1) for dc in (0, 1)]).astype(np.float64)
    hull = ConvexHull(corners).volume  # in 2-D its area: the pixels' squares, so solidity <= 1
    cov = np.cov(np.stack([rows, cols])) if area > 2 else np.eye(2)
    minor, major = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0))
    perimeter = int(edge.sum())
    filled = filled_nucleus(nucleus) if filled is None else filled
    return np.array([
        area / nucleus.size,
        ndimage.label(nucleus)[1],
        ndimage.label(ndimage.binary_erosion(nucleus, iterations=LOBE_EROSION))[1],
        area / hull,
        perimeter**2 / max(area, 1),
        minor / max(major, 1e-6),
        major / side,
        area / max(int(filled.sum()), 1),
    ])


def region_measures(window: np.ndarray, grey: np.ndarray, laplacian: np.ndarray,
                    region: np.ndarray) -> np.ndarray:
    """REGION_NAMES of the pixels in `region` (zeros when it has fewer than 3)."""
    if region.sum() < 3:
        return np.zeros(len(REGION_NAMES))
    pixels = window[region].astype(np.float64)
    return np.concatenate([pixels.mean(0), pixels.std(0), [
        grey[region].std(), np.abs(laplacian[region]).mean(), (grey[region] < DARK).mean()]])


def lbp_codes(grey: np.ndarray, radius: int) -> np.ndarray:
    """Uniform LBP code (0..LBP_CODES - 1) of every pixel: its 8 neighbours on the square of
    `radius` (edges replicated), each 1 when >= the pixel; the number of ones when they form
    one run around the circle (<= 2 transitions), else 9."""
    g = np.pad(grey, radius, mode="edge")
    h, w = grey.shape
    steps = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))  # a circle
    bits = np.stack([g[radius + dr * radius : radius + dr * radius + h,
                       radius + dc * radius : radius + dc * radius + w] >= grey
                     for dr, dc in steps])
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    return np.where(transitions <= 2, bits.sum(axis=0), LBP_CODES - 1)


def shares(values: np.ndarray, bins: int, low: float, high: float) -> np.ndarray:
    """Histogram of `values` over [low, high) in `bins`, as shares of all values (zeros if
    there are none)."""
    if values.size == 0:
        return np.zeros(bins)
    return np.histogram(values, bins=bins, range=(low, high))[0] / values.size


def texture_measures(window: np.ndarray, grey: np.ndarray, regions: list[np.ndarray]
                     ) -> np.ndarray:
    """TEXTURE_NAMES of the (nucleus, ring1, ring2) masks."""
    stain = window[..., 2].astype(np.int16) - window[..., 1]
    parts = [shares(grey[m], GREY_BINS, 0, 256) for m in regions]
    parts.append(shares(stain[regions[0]], STAIN_BINS, 0, STAIN_MAX))
    for radius in LBP_RADII:
        codes = lbp_codes(grey, radius)
        parts += [shares(codes[m], LBP_CODES, -0.5, LBP_CODES - 0.5) for m in regions]
    return np.concatenate(parts)


def cell_measures(window: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] cell window -> float32 [DIM] (NAMES); zeros when nothing is stained."""
    nucleus = nucleus_mask(window)
    if not nucleus.any():
        return np.zeros(DIM, np.float32)
    filled = filled_nucleus(nucleus)
    inner, outer = (ndimage.binary_dilation(filled, iterations=r) for r in RINGS)
    grey = window.astype(np.float32).mean(axis=2)
    laplacian = ndimage.laplace(grey)
    regions = [nucleus, inner & ~filled, outer & ~inner]
    parts = [shape_measures(nucleus, filled)]
    parts += [region_measures(window, grey, laplacian, region) for region in regions]
    parts.append(texture_measures(window, grey, regions))
    return np.concatenate(parts).astype(np.float32)


def cell_shape(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] image of one cell -> float32 [DIM]: `cell_measures` of its window."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    return cell_measures(WINDOW_RULE(image))
