import numpy as np, random, sys
from pathlib import Path
from PIL import Image
from cellssl_jax.featurize.crop import stained_box
random.seed(0)
for name in ["acevedo_pbc_dev","matek_bm_dev","matek_blood_unlabelled","wbc_crops_unlabelled"]:
    files = sorted(p for p in Path("../shared/data",name).rglob("*") if p.suffix.lower() in (".jpg",".jpeg",".png",".tif",".tiff"))
    random.shuffle(files)
    sides=[]; shapes=[]
    for f in files[:200]:
        im = np.asarray(Image.open(f).convert("RGB"))
        h,w = im.shape[:2]; shapes.append((h,w))
        b = stained_box(im)
        if b is None: continue
        t,l,bo,r = b
        sides.append(max((bo-t)*352/h,(r-l)*352/w))
    s=np.array(sides)
    print(name, "shapes", sorted(set(shapes))[:3], "n", len(s), "box side @352: q10/50/90", np.percentile(s,[10,50,90]).round(0))
