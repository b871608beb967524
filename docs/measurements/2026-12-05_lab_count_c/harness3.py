"""Issue 21, third pass: feature variants x methods on the lab protocol (validation part).
A spec joins blocks with "+": cls, mp, ch, morph, bK (mean patch token after block K)."""
import os, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.sampling import builder_parts
from cellssl_jax.fewshot.lab import lab_protocol

def block(z, b):
    if b[0] == "b" and b[1:].isdigit():
        return z["blocks"][:, int(b[1:])]
    if b.startswith("log"):
        return np.sign(z[b[3:]]) * np.log1p(np.abs(z[b[3:]]))
    return z[b]

def variant(z, spec):
    return np.concatenate([block(z, b) for b in spec.split("+")], 1).astype(np.float32)

def run(path, specs, methods, n=(5, 20), mixes=("balanced", "normal_blood"), repeats=5, part="validation"):
    z = dict(np.load(path))
    for key in ("morph2", "texture", "texture2"):  # extract_morph.py's, extract_texture.py's files beside it
        extra = path.replace(".npz", f"_{key}.npz")
        if os.path.exists(extra):
            m = np.load(extra)
            assert (m["paths"] == z["paths"]).all()
            z[key] = m[key]
    names = [str(c) for c in z["class_names"]]; paths = [str(p) for p in z["paths"]]
    labels = z["labels"].astype(np.int64)
    which = builder_parts(paths, labels, names)
    for spec in specs:
        f = Features(variant(z, spec), labels, names, paths)
        fit, scored = f.subset(np.flatnonzero(which == "fit")), f.subset(np.flatnonzero(which == part))
        ev = lab_protocol(fit, scored, methods, n, mixes, repeats, jobs=2)
        for s in ev.summary():
            print(f"{spec:28s} {s['method']:28s} n={s['n']:2d} {s['mix']:13s} "
                  f"BA {100*s['balanced_accuracy']:.1f}  CE {s['count_error_mean']:.2f}", flush=True)

if __name__ == "__main__":
    n = tuple(int(v) for v in sys.argv[4].split(",")) if len(sys.argv) > 4 else (5, 20)
    run(sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), n)
