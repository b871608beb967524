"""Issue 21, third pass: richer hand-made cell measures on the default crop read: the nucleus's
shape (area, parts, lobes, solidity, roundness, axes) and the colour and texture of the nucleus
and of two rings around it (the cytoplasm's granules: eosinophil orange, basophil dark)."""
import sys, time
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from concurrent.futures import ThreadPoolExecutor
from cellssl_jax.data.reading import FolderSource, read_item
from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize.featurizers import read_size
from cellssl_jax.featurize.crop import otsu

N_OUT = 47

def region_stats(img, grey, lap, m):
    if m.sum() < 3:
        return np.zeros(9, np.float32)
    px = img[m].astype(np.float32)
    return np.concatenate([px.mean(0), px.std(0), [grey[m].std(), np.abs(lap[m]).mean(),
                                                   (grey[m] < 100).mean()]])

def measures(img):
    v = img.astype(np.int16); stain = v[..., 2] - v[..., 1]
    mask = stain > max(40, otsu(stain)); h, w = mask.shape
    lab, k = ndimage.label(ndimage.binary_dilation(mask, iterations=3))
    mid = lab[h // 4: 3 * h // 4, w // 4: 3 * w // 4]; ids = np.unique(mid[mid > 0])
    if len(ids) == 0:
        return np.zeros(N_OUT, np.float32)
    sizes = np.bincount(lab[mask], minlength=k + 1); keep = ids[np.argmax(sizes[ids])]
    nuc = mask & (lab == keep); area = nuc.sum()
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(nuc, iterations=4))
    rows, cols = np.nonzero(nuc)
    try:
        hull = ConvexHull(np.stack([rows, cols], 1)).volume
    except Exception:
        hull = area
    cov = np.cov(np.stack([rows, cols])) if area > 2 else np.eye(2)
    ev = np.sort(np.linalg.eigvalsh(cov))
    perim = (nuc ^ ndimage.binary_erosion(nuc)).sum()
    lobes = ndimage.label(ndimage.binary_erosion(nuc, iterations=3))[1]
    shape = [area / (h * w), ndimage.label(nuc)[1], lobes, area / max(hull, 1),
             perim ** 2 / max(area, 1), np.sqrt(ev[0] / max(ev[1], 1e-6)), np.sqrt(ev[1]) / h,
             area / max(filled.sum(), 1)]
    grey = img.astype(np.float32).mean(2); lap = ndimage.laplace(grey)
    d1 = ndimage.binary_dilation(filled, iterations=8) & ~filled
    d2 = ndimage.binary_dilation(filled, iterations=18) & ~ndimage.binary_dilation(filled, iterations=8)
    out = np.concatenate([shape, region_stats(img, grey, lap, nuc), region_stats(img, grey, lap, d1),
                          region_stats(img, grey, lap, d2), [0, 0]]).astype(np.float32)
    return out[:N_OUT] if len(out) >= N_OUT else np.pad(out, (0, N_OUT - len(out)))

folder, out = sys.argv[1], sys.argv[2]
rs = read_size(load_encoder()); src = FolderSource(folder); n = len(src)
def prep(i):
    item = read_item(src, i)
    return measures(rs.resize(item["image"])), item["label"], item["file_name"]
t0 = time.time()
with ThreadPoolExecutor(2) as ex:
    res = list(ex.map(prep, range(n)))
np.savez(out, morph2=np.stack([r[0] for r in res]), labels=np.array([r[1] for r in res]),
         paths=np.array([r[2] for r in res]))
print("done", n, time.time() - t0)
