"""Issue 21, third pass: texture beside the shipped cell shape (not shipped unless chosen):
grey-level and stain histograms of the nucleus and the rings, and uniform LBP (8 neighbours,
radius 1) histograms of the nucleus and the inner ring, in the cell-shape window."""
import sys, time
import numpy as np
from scipy import ndimage
from concurrent.futures import ThreadPoolExecutor
from cellssl_jax.data.reading import FolderSource, read_item
from cellssl_jax.featurize import cellshape as cs

def lbp_uniform(grey, r=1):
    """Uniform LBP codes (0..9) of 8 neighbours at radius r (nearest pixels; edges replicated)."""
    g = np.pad(grey, r, mode="edge"); c = g[r:-r, r:-r]
    offs = [(-r, -r), (-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r)]
    bits = np.stack([g[r + dr: g.shape[0] - r + dr, r + dc: g.shape[1] - r + dc] >= c for dr, dc in offs])
    trans = (bits != np.roll(bits, 1, axis=0)).sum(0)
    ones = bits.sum(0)
    return np.where(trans <= 2, ones, 9)

def hist(values, bins, lo, hi):
    if values.size == 0:
        return np.zeros(bins)
    h, _ = np.histogram(values, bins=bins, range=(lo, hi))
    return h / values.size

def texture(image):
    w = cs.WINDOW_RULE(image)
    nuc = cs.nucleus_mask(w)
    if not nuc.any():
        return np.zeros(8 * 3 + 8 + 10 * (2 + EXTRA * 4), np.float32)
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(nuc, iterations=4))
    inner, outer = (ndimage.binary_dilation(filled, iterations=r) for r in cs.RINGS)
    r1, r2 = inner & ~filled, outer & ~inner
    grey = w.astype(np.float32).mean(2); stain = w[..., 2].astype(np.int16) - w[..., 1]
    lbp = lbp_uniform(grey)
    out = [hist(grey[m], 8, 0, 256) for m in (nuc, r1, r2)] + [hist(stain[nuc], 8, 0, 160)]
    out += [hist(lbp[m], 10, -0.5, 9.5) for m in (nuc, r1)]
    if EXTRA:  # radius 2 in the three regions, radius 1 in the outer ring
        lbp2 = lbp_uniform(grey, 2)
        out += [hist(lbp2[m], 10, -0.5, 9.5) for m in (nuc, r1, r2)] + [hist(lbp[r2], 10, -0.5, 9.5)]
    return np.concatenate(out).astype(np.float32)

folder, out = sys.argv[1], sys.argv[2]
EXTRA = len(sys.argv) > 3  # "texture2": the extra LBP histograms
KEY = "texture2" if EXTRA else "texture"
src = FolderSource(folder); n = len(src)
def prep(i):
    item = read_item(src, i); return texture(item["image"]), item["file_name"]
t0 = time.time()
with ThreadPoolExecutor(2) as ex:
    res = list(ex.map(prep, range(n)))
np.savez(out, **{KEY: np.stack([r[0] for r in res])}, paths=np.array([r[1] for r in res]))
print("done", n, time.time() - t0)
