import numpy as np, random
from pathlib import Path
from PIL import Image
random.seed(0)
def white(im, q=90):
    g = im.mean(2); return im[g >= np.percentile(g, q)].mean(0)
for name in ["acevedo_pbc_dev","matek_bm_dev","matek_blood_unlabelled","wbc_crops_unlabelled"]:
    fs = sorted(p for p in Path("../shared/data",name).rglob("*.jp*g")); random.shuffle(fs)
    W = np.array([white(np.asarray(Image.open(f).convert("RGB")).astype(float)) for f in fs[:200]])
    print(f"{name:24s} white mean {W.mean(0).round(0)} std {W.std(0).round(1)}  R/B ratio std {np.std(W[:,0]/W[:,2]):.3f}")
