"""Issue 21, third pass: per cell (the default crop read), the mean patch token after every
XCiT block, the final CLS and mean patch token, the whole image's colour histogram, and simple
nucleus shape measures. Not shipped: for choosing features on validation."""
import sys, time
import numpy as np
import jax, jax.numpy as jnp
from scipy import ndimage
from concurrent.futures import ThreadPoolExecutor
from cellssl_jax.data.reading import FolderSource, read_item
from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize.featurizers import read_size
from cellssl_jax.featurize.crop import otsu
from cellssl_jax.models.xcit import XCABlock
from cellssl_jax import colorhist

def nucleus_shape(img):
    """Area share, parts, solidity-like fill, perimeter^2/area, axes ratio, stain stats of
    the stained (B - G) region nearest the middle of the crop."""
    v = img.astype(np.int16); stain = v[..., 2] - v[..., 1]
    mask = stain > max(40, otsu(stain))
    h, w = mask.shape
    lab, k = ndimage.label(ndimage.binary_dilation(mask, iterations=3))
    mid = lab[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    ids = np.unique(mid[mid > 0])
    if len(ids) == 0:
        return np.zeros(12, np.float32)
    sizes = np.bincount(lab[mask], minlength=k + 1)
    keep = ids[np.argmax(sizes[ids])]
    nuc = mask & (lab == keep)
    area = nuc.sum()
    parts = ndimage.label(nuc)[1]
    perim = (nuc ^ ndimage.binary_erosion(nuc)).sum()
    rows, cols = np.nonzero(nuc)
    box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    cov = np.cov(np.stack([rows, cols])) if area > 2 else np.eye(2)
    ev = np.sort(np.linalg.eigvalsh(cov))
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(nuc, iterations=4)).sum()
    s = stain[nuc].astype(np.float32); g = v[..., 1][nuc].astype(np.float32)
    return np.array([area / (h * w), parts, area / box, perim ** 2 / max(area, 1),
                     np.sqrt(ev[0] / max(ev[1], 1e-6)), area / max(filled, 1),
                     s.mean(), s.std(), g.mean(), g.std(), np.sqrt(box) / h,
                     (stain > 20).sum() / (h * w)], np.float32)

folder, out = sys.argv[1], sys.argv[2]
enc = load_encoder(); rs = read_size(enc); src = FolderSource(folder); n = len(src)
mean, std = enc.mean, enc.std
def run(variables, images):
    x = (images.astype(jnp.float32) / 255.0 - mean) / std
    o, st = enc.model.apply(variables, x, train=False, mutable=["intermediates"],
                            capture_intermediates=lambda m, name: isinstance(m, XCABlock))
    blocks = [st["intermediates"][f"blocks_{i}"]["__call__"][0].mean(1) for i in range(enc.model.depth)]
    return o["cls"], o["patch_tokens"].mean(1), jnp.stack(blocks, 1)
run = jax.jit(run)
def prep(i):
    item = read_item(src, i); img = item["image"]; crop = rs.resize(img)
    return crop, colorhist.colour_histogram(img), nucleus_shape(crop), item
t0 = time.time(); res = {k: [] for k in ("cls", "mp", "blocks", "ch", "morph")}; labels, paths = [], []
B = 32
with ThreadPoolExecutor(2) as ex:
    for s in range(0, n, B):
        items = list(ex.map(prep, range(s, min(n, s + B))))
        crops = np.stack([c for c, *_ in items]); m = len(crops)
        if m < B: crops = np.concatenate([crops, np.repeat(crops[-1:], B - m, 0)])
        cls, mp, blocks = (np.asarray(a)[:m] for a in run(enc.variables, crops))
        res["cls"].append(cls); res["mp"].append(mp); res["blocks"].append(blocks)
        res["ch"].append(np.stack([h for _, h, _, _ in items])); res["morph"].append(np.stack([q for _, _, q, _ in items]))
        labels += [it["label"] for *_, it in items]; paths += [it["file_name"] for *_, it in items]
        if s % 640 == 0: print(s, n, f"{time.time()-t0:.0f}s", flush=True)
np.savez(out, **{k: np.concatenate(v) for k, v in res.items()}, labels=np.array(labels),
         paths=np.array(paths), class_names=np.array(src.class_names))
print("done", time.time() - t0)
