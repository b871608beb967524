"""Encoder rows of each cell read zoomed IN by z >= 1 (the crop rule's 192-px window enlarged
to z x 192 and its centre 192 px kept), in a features file's row order; the fifth pass's
`zoom_features.py` tried z < 1 (worse on BM).

    python zoom_in.py runs/feat_bm/features.npz OUT.npy Z
"""
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from cellssl_jax.data.reading import resize_rgb
from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize.cellshape import WINDOW_RULE
from cellssl_jax.fewshot.features import load_features


def read(path, z):
    w = WINDOW_RULE(np.asarray(Image.open(path).convert("RGB")))
    s = int(round(192 * z))
    big = resize_rgb(w, (s, s))
    a = (s - 192) // 2
    return big[a:a + 192, a:a + 192]


if __name__ == "__main__":
    f, z = load_features(sys.argv[1]), float(sys.argv[3])
    enc = load_encoder()
    with ThreadPoolExecutor(2) as ex:
        imgs = list(ex.map(lambda p: read(p, z), f.paths))
    out = []
    for i in range(0, len(imgs), 32):
        b = np.stack(imgs[i:i + 32])
        n = len(b)
        if n < 32:
            b = np.concatenate([b, np.repeat(b[-1:], 32 - n, 0)])
        out.append(enc.embed(b)[:n])
    np.save(sys.argv[2], np.concatenate(out).astype(np.float32))
