"""Encoder rows of the fit part's cells read in the 8 orientations of the square (4 rotations,
each also mirrored): cells have no orientation, so each labelled cell can stand for 8.

    python views.py runs/feat_bm/features.npz OUT.npz

OUT.npz: `index` (rows of the features file: its fit part), `views` [N, 8, D] (view 0 is the
cell as read; it must equal the file's encoder columns).
"""
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from tqdm import tqdm

from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize.cellshape import WINDOW_RULE
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts


def orientations(w):
    rots = [np.rot90(w, k) for k in range(4)]
    return np.stack(rots + [r[:, ::-1] for r in rots])


def read(path):
    return orientations(WINDOW_RULE(np.asarray(Image.open(path).convert("RGB"))))


if __name__ == "__main__":
    f = load_features(sys.argv[1])
    index = np.flatnonzero(builder_parts(f.paths, f.labels, f.class_names) == "fit")
    enc = load_encoder()
    out = []
    with ThreadPoolExecutor(2) as ex:
        for i in tqdm(range(0, len(index), 4), unit="4 cells"):
            b = np.concatenate(list(ex.map(read, [f.paths[j] for j in index[i:i + 4]])))
            n = len(b)
            if n < 32:
                b = np.concatenate([b, np.repeat(b[-1:], 32 - n, 0)])
            out.append(enc.embed(np.ascontiguousarray(b))[:n].reshape(-1, 8, enc.dim))
    views = np.concatenate(out).astype(np.float32)
    gap = np.abs(views[:, 0] - f.features[index, :enc.dim]).max()
    print(f"{len(index)} fit cells; view 0 vs the file's encoder columns: max |diff| {gap:.2e}")
    np.savez(sys.argv[2], index=index, views=views)
