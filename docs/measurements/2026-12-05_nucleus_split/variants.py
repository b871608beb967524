"""Nucleus-mask variants for cellshape, extracted for every PBC / BM cell (paths as runs/feat4)."""
import sys, numpy as np
from PIL import Image
from scipy import ndimage
from joblib import Parallel, delayed
import cellssl_jax.featurize.cellshape as cs
from cellssl_jax.featurize.crop import otsu

BASE = cs.nucleus_mask

def central(mask):
    h, w = mask.shape
    labels, count = ndimage.label(ndimage.binary_dilation(mask, iterations=cs.JOIN))
    mid = labels[h // 4 : h - h // 4, w // 4 : w - w // 4]
    c = np.unique(mid[mid > 0])
    if len(c) == 0:
        return mask
    sizes = np.bincount(labels[mask], minlength=count + 1)
    return mask & (labels == c[np.argmax(sizes[c])])

def make(kind, gap):
    def nucleus_mask(window, min_stain=cs.WINDOW_RULE.min_stain):
        m = BASE(window, min_stain)
        if m.sum() < 50:
            return m
        v = window.astype(np.float32)
        val = v.mean(2) if kind == "grey" else v[..., 1]  # grey or green: the nucleus is darkest
        inside = val[m]
        t = otsu(inside.round())
        lo, hi = inside[inside <= t], inside[inside > t]
        if len(lo) == 0 or len(hi) == 0:
            return m
        share = len(lo) / len(inside)
        if hi.mean() - lo.mean() >= gap and 0.2 <= share <= 0.9:
            dark = m & (val <= t)
            dark = ndimage.binary_opening(dark, iterations=1)
            out = central(dark)
            return out if out.sum() >= 0.1 * m.sum() else m
        return m
    return nucleus_mask

def run(path, out, kind, gap):
    cs.nucleus_mask = make(kind, gap) if kind != "base" else BASE
    z = np.load(path)
    paths = [str(p) for p in z["paths"]]
    feats = Parallel(n_jobs=2, batch_size=64)(delayed(one)(p, kind, gap) for p in paths)
    np.savez(out, cellshape=np.stack(feats), paths=np.array(paths))

def one(p, kind, gap):
    cs.nucleus_mask = make(kind, gap) if kind != "base" else BASE
    return cs.cell_shape(np.asarray(Image.open(p).convert("RGB")))

if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
