"""Colour-histogram features: a fast baseline that needs no encoder.

Per image, a 32-bin histogram of each RGB channel, each normalised to sum to 1 (96 values):
independent of image size, so native-size cells need no resizing. Any learned encoder should
beat it; on stained blood smears it is surprisingly strong because stain colour and the
nucleus/cytoplasm ratio differ between cell types.
"""

from __future__ import annotations

import numpy as np

BINS = 32
NAME = f"colorhist_3x{BINS}"


def colour_histogram(image: np.ndarray, bins: int = BINS) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3 * bins]: per-channel histograms, each summing to 1."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    if 256 % bins:
        raise ValueError(f"bins must divide 256, got {bins}")
    idx = image.reshape(-1, 3).astype(np.int64) // (256 // bins) + np.arange(3) * bins
    counts = np.bincount(idx.ravel(), minlength=3 * bins).astype(np.float32)
    return counts / (image.shape[0] * image.shape[1])
