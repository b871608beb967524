"""Encoder rows of each cell read zoomed out by z (the crop rule's window shrunk to z x 192 and
padded to 192 with edge reflection), in a features file's row order."""
import sys, numpy as np
from PIL import Image
from concurrent.futures import ThreadPoolExecutor
from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize.cellshape import WINDOW_RULE
from cellssl_jax.data.reading import resize_rgb
from cellssl_jax.fewshot.features import load_features

def read(path, z, pad):
    w = WINDOW_RULE(np.asarray(Image.open(path).convert("RGB")))
    if z == 1: return w
    s = int(round(192 * z)); small = resize_rgb(w, (s, s)); a = (192 - s) // 2; b = 192 - s - a
    return np.pad(small, ((a, b), (a, b), (0, 0)), mode=pad)

if __name__ == "__main__":
    f = load_features(sys.argv[1]); z = float(sys.argv[3]); pad = sys.argv[4] if len(sys.argv) > 4 else "reflect"
    enc = load_encoder()
    out = []
    with ThreadPoolExecutor(2) as ex:
        imgs = list(ex.map(lambda p: read(p, z, pad), f.paths))
    for i in range(0, len(imgs), 32):
        b = np.stack(imgs[i:i+32]); n = len(b)
        if n < 32: b = np.concatenate([b, np.repeat(b[-1:], 32 - n, 0)])
        out.append(enc.embed(b)[:n])
    np.save(sys.argv[2], np.concatenate(out).astype(np.float32))
