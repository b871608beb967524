"""PBC dev cells as a laboratory that saves each white cell's detection box would: a square of
1.25x the stained box's side around it (cut at the image's edge), JPEG quality 95, as
`../shared/data/wbc_crops_unlabelled` was made. `pad`: the same crop centred on a canvas of the
original image's size filled with the crop's background (the mean of its brightest 10 %), so
every crop keeps the pixel scale it was taken at.

    python make_crops.py ../shared/data/acevedo_pbc_dev OUT_BOX OUT_PAD
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cellssl_jax.featurize.crop import stained_box

FACTOR = 1.25


def box_crop(im):
    h, w = im.shape[:2]
    box = stained_box(im)
    if box is None:
        return im
    top, left, bottom, right = box
    side = FACTOR * max(bottom - top, right - left)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    t, b = max(0, round(cy - side / 2)), min(h, round(cy + side / 2))
    lft, r = max(0, round(cx - side / 2)), min(w, round(cx + side / 2))
    return im[t:b, lft:r]


def padded(crop, shape):
    grey = crop.astype(np.float32).mean(axis=2)
    bright = crop[grey >= np.percentile(grey, 90)].mean(axis=0)
    canvas = np.empty(shape, np.uint8)
    canvas[:] = np.round(bright).astype(np.uint8)
    h, w = crop.shape[:2]
    t, lft = (shape[0] - h) // 2, (shape[1] - w) // 2
    canvas[t:t + h, lft:lft + w] = crop
    return canvas


if __name__ == "__main__":
    src, box_out, pad_out = (Path(a) for a in sys.argv[1:4])
    for p in tqdm(sorted(src.glob("*/*.jpg"))):
        im = np.asarray(Image.open(p).convert("RGB"))
        crop = box_crop(im)
        rel = p.relative_to(src)
        for out, arr in ((box_out, crop), (pad_out, padded(crop, im.shape))):
            (out / rel.parent).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(out / rel, quality=95)
