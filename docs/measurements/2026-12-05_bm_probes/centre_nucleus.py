"""cellshape with the nucleus = the stained part nearest the window's centre (distance of its
pixels to the centre), not the largest part touching the central half."""
import sys, numpy as np
from PIL import Image
from joblib import Parallel, delayed
from scipy import ndimage
from cellssl_jax.featurize import cellshape
from cellssl_jax.featurize.crop import otsu
from cellssl_jax.fewshot.features import load_features

def nucleus_mask(window, min_stain=40):
    v = window.astype(np.int16)
    stain = v[..., 2] - v[..., 1]
    mask = stain > max(min_stain, otsu(stain))
    h, w = mask.shape
    labels, count = ndimage.label(ndimage.binary_dilation(mask, iterations=cellshape.JOIN))
    if count == 0: return np.zeros_like(mask)
    lab = np.where(mask, labels, 0)
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    mind = ndimage.minimum(d, lab, index=np.arange(1, count + 1))
    sizes = np.bincount(lab.ravel(), minlength=count + 1)[1:]
    ok = sizes >= 0.005 * h * w
    if not ok.any(): return np.zeros_like(mask)
    mind = np.where(ok, mind, np.inf)
    if mind.min() > h / 4: return np.zeros_like(mask)
    return mask & (labels == 1 + int(np.argmin(mind)))

cellshape.nucleus_mask = nucleus_mask
def one(path):
    cellshape.nucleus_mask = nucleus_mask
    return cellshape.cell_shape(np.asarray(Image.open(path).convert("RGB")))
if __name__ == "__main__":
    f = load_features(sys.argv[1])
    rows = Parallel(2, batch_size=64)(delayed(one)(p) for p in f.paths)
    X = f.features.copy(); X[:, 224:351] = np.stack(rows)
    np.save(sys.argv[2], X.astype(np.float32))
