"""Issue 21 experiment: per cell, crop-read CLS and mean patch token (plain and h-flipped),
colour histogram of the whole image and of the crop. Not shipped: for choosing on validation."""
import sys, time
import numpy as np
from pathlib import Path
from cellssl_jax.data.reading import FolderSource, read_item
from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize.featurizers import read_size
from cellssl_jax import colorhist
from concurrent.futures import ThreadPoolExecutor

folder, out = sys.argv[1], sys.argv[2]
enc = load_encoder()
rs = read_size(enc)
src = FolderSource(folder)
n = len(src)
def prep(i):
    item = read_item(src, i)
    img = item["image"]
    crop = rs.resize(img)
    return crop, colorhist.colour_histogram(img), colorhist.colour_histogram(crop), item
t0 = time.time()
res = {k: [] for k in ("cls", "mp", "cls_f", "mp_f", "ch", "ch_crop")}
labels, paths = [], []
B = 32
with ThreadPoolExecutor(2) as ex:
    for s in range(0, n, B):
        items = list(ex.map(prep, range(s, min(n, s + B))))
        crops = np.stack([c for c, *_ in items])
        m = len(crops)
        if m < B:
            crops = np.concatenate([crops, np.repeat(crops[-1:], B - m, 0)])
        for suf, x in (("", crops), ("_f", crops[:, :, ::-1])):
            o = enc.forward(np.ascontiguousarray(x))
            res["cls" + suf].append(o["cls"][:m]); res["mp" + suf].append(o["patch_tokens"].mean(1)[:m])
        res["ch"] += [h for _, h, _, _ in items]; res["ch_crop"] += [h for _, _, h, _ in items]
        labels += [it["label"] for *_, it in items]; paths += [it["file_name"] for *_, it in items]
        if s % 640 == 0: print(s, n, f"{time.time()-t0:.0f}s", flush=True)
np.savez(out, **{k: np.concatenate(v) if k not in ("ch", "ch_crop") else np.stack(v) for k, v in res.items()},
         labels=np.array(labels), paths=np.array(paths), class_names=np.array(src.class_names))
print("done", time.time() - t0)
