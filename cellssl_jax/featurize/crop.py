"""The crop rule: read only the cell, not the field of red cells around it.

A lab's cell image has the cell of interest in the middle of a field of red cells and
background; the encoder's cost grows with the pixels it reads (XCiT is linear in the tokens),
so most of today's work goes to the background. The rule finds the stained region (the
nucleus: blue well above green, a threshold at least `min_stain` and Otsu's on B - G), takes
its connected part nearest the middle (dilated first, so the lobes of a neutrophil's nucleus
count as one), adds a margin for the cytoplasm, and reads a `window` x `window` square around
it **at the encoder's scale** (the scale of the whole image read at `scale_to`), so a cell
looks as large as today and one compiled shape serves every image. A stained box larger than
the window (a big cell, or a scanner whose cells fill the image, e.g. Matek's bone marrow) is
read whole, resized down to the window; an image with no stain is read around its middle.

Colour histograms keep reading the whole image (the rule applies to the encoder only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from cellssl_jax.data.reading import resize_rgb

RULE = "stain"  # the one rule so far: the stained region, B - G thresholded
PROBE = 96  # the mask is computed on a view about this many pixels across (speed)


@dataclass(frozen=True)
class CropRule:
    """Where the encoder reads a cell: a `window`-px square at the scale of the image read at
    `scale_to` x `scale_to`, around the stained box grown by `margin` x its side per side."""

    window: int
    scale_to: int
    margin: float = 0.3
    min_stain: int = 40
    rule: str = RULE

    def __post_init__(self):
        if self.rule != RULE:
            raise ValueError(f"unknown crop rule {self.rule!r}; known: {RULE!r}")
        if not (self.window >= 8 and self.scale_to >= self.window):
            raise ValueError(f"crop window must be >= 8 and <= scale_to ({self.scale_to}), "
                             f"got {self.window}")
        if self.margin < 0:
            raise ValueError(f"crop margin must be >= 0, got {self.margin}")

    @property
    def name(self) -> str:
        """As features files and the cache record it (every field that changes a row)."""
        return f"{self.rule}{self.window}of{self.scale_to}m{self.margin:g}t{self.min_stain}"

    def to_meta(self) -> dict:
        """The encoder file's "crop" entry (its scale is the file's input_size)."""
        meta = asdict(self)
        del meta["scale_to"]
        return meta

    @classmethod
    def from_meta(cls, meta: dict, scale_to: int | None) -> CropRule:
        """The rule of an encoder file's "crop" entry, at the scale of its `input_size`."""
        unknown = set(meta) - set(cls.__dataclass_fields__) | ({"scale_to"} & set(meta))
        if unknown:
            raise ValueError(f"unknown crop fields {sorted(unknown)}")
        if not scale_to:
            raise ValueError("a crop rule needs the encoder's input_size (its scale)")
        return cls(scale_to=int(scale_to), **meta)

    def region(self, image: np.ndarray) -> tuple[int, int, int, int]:
        """The (top, left, height, width) of `image` the encoder reads, in its own pixels."""
        h, w = image.shape[:2]
        box = stained_box(image, self.min_stain)
        sy, sx = self.scale_to / h, self.scale_to / w  # native -> read pixels, per axis
        if box is None:  # no stain: the middle
            cy, cx, side = h / 2, w / 2, 0.0
        else:
            top, left, bottom, right = box
            cy, cx = (top + bottom) / 2, (left + right) / 2
            grow = 1 + 2 * self.margin
            side = max((bottom - top) * sy, (right - left) * sx) * grow  # read pixels
        side = max(side, self.window)
        rh, rw = min(h, round(side / sy)), min(w, round(side / sx))
        top = int(np.clip(round(cy - rh / 2), 0, h - rh))
        left = int(np.clip(round(cx - rw / 2), 0, w - rw))
        return top, left, rh, rw

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> the uint8 [window, window, 3] the encoder reads."""
        top, left, rh, rw = self.region(image)
        return resize_rgb(image[top : top + rh, left : left + rw], (self.window, self.window))


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of integer-valued `values` (between-class variance, 256 bins)."""
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    w0, w1 = weight[:-1], total - weight[:-1]
    ok = (w0 > 0) & (w1 > 0)
    if not ok.any():
        return float(values.max())
    m0 = mean[:-1] / np.maximum(w0, 1)
    m1 = (mean[-1] - mean[:-1]) / np.maximum(w1, 1)
    between = np.where(ok, w0 * w1 * (m0 - m1) ** 2, -1.0)
    return float(edges[1:][int(np.argmax(between))])


def stained_box(image: np.ndarray, min_stain: int = 40) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the stained region nearest the middle of `image`, in its
    pixels (bottom/right exclusive); None when nothing is stained."""
    h, w = image.shape[:2]
    step = max(1, min(h, w) // PROBE)
    view = image[::step, ::step].astype(np.int16)
    stain = view[..., 2] - view[..., 1]  # nuclei (purple) are blue well above green
    mask = stain > max(min_stain, otsu(stain))
    if not mask.any():
        return None
    grown = ndimage.binary_dilation(mask, iterations=max(1, round(0.04 * min(mask.shape))))
    labels, count = ndimage.label(grown)
    vh, vw = mask.shape
    mid = labels[vh // 4 : vh - vh // 4, vw // 4 : vw - vw // 4]  # the central half
    sizes = np.bincount(labels[mask], minlength=count + 1)  # stained pixels per part
    central = np.unique(mid[mid > 0])
    if len(central) == 0:
        return None
    keep = central[np.argmax(sizes[central])]
    rows, cols = np.nonzero(mask & (labels == keep))
    return (int(rows.min()) * step, int(cols.min()) * step,
            min(h, (int(rows.max()) + 1) * step), min(w, (int(cols.max()) + 1) * step))
