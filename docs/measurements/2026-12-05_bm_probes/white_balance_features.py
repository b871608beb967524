"""colorhist + cellshape of white-balanced images, rows in the order of a features file."""
import sys, numpy as np
from PIL import Image
from joblib import Parallel, delayed
from cellssl_jax import colorhist
from cellssl_jax.featurize import cellshape
from cellssl_jax.fewshot.features import load_features

def wb(im, q=90, target=240.0):
    x = im.astype(np.float32)
    g = x.mean(2)
    white = x[g >= np.percentile(g, q)].mean(0)
    return np.clip(x * (target / np.maximum(white, 1.0)), 0, 255).round().astype(np.uint8)

def one(path, q):
    im = np.asarray(Image.open(path).convert("RGB"))
    w = wb(im, q)
    return np.concatenate([colorhist.colour_histogram(w), cellshape.cell_shape(w)])

if __name__ == "__main__":
    f = load_features(sys.argv[1]); q = float(sys.argv[3]) if len(sys.argv) > 3 else 90
    rows = Parallel(2, batch_size=64)(delayed(one)(p, q) for p in f.paths)
    np.save(sys.argv[2], np.stack(rows).astype(np.float32))
