"""Issue 21 experiment harness: feature variants x methods on the lab protocol (validation)."""
import os, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.sampling import builder_parts
from cellssl_jax.fewshot.lab import lab_protocol

def variant(z, spec):
    blocks = []
    for b in spec.split("+"):
        if b.endswith("~"):  # flip-averaged
            k = b[:-1]; blocks.append((z[k] + z[k + "_f"]) / 2)
        else:
            blocks.append(z[b])
    return np.concatenate(blocks, 1).astype(np.float32)

def run(ds, specs, methods, n=(5, 20), mixes=("balanced", "normal_blood"), repeats=5, part="validation", jobs=2):
    z = np.load(os.environ.get("VARIANTS", "runs/exp") + f"/{ds}.npz")
    names = [str(c) for c in z["class_names"]]
    paths = [str(p) for p in z["paths"]]
    labels = z["labels"].astype(np.int64)
    which = builder_parts(paths, labels, names)
    out = {}
    for spec in specs:
        f = Features(variant(z, spec), labels, names, paths)
        fit, scored = f.subset(np.flatnonzero(which == "fit")), f.subset(np.flatnonzero(which == part))
        ev = lab_protocol(fit, scored, methods, n, mixes, repeats, jobs=jobs)
        for s in ev.summary():
            key = (spec, s["method"], s["n"], s["mix"])
            out[key] = (s["balanced_accuracy"], s["count_error_mean"])
            print(f"{ds:4s} {spec:28s} {s['method']:28s} n={s['n']:2d} {s['mix']:13s} "
                  f"BA {100*s['balanced_accuracy']:.1f}  CE {s['count_error_mean']:.2f}", flush=True)
    return out

if __name__ == "__main__":
    ds = sys.argv[1]; specs = sys.argv[2].split(","); methods = sys.argv[3].split(",")
    n = tuple(int(v) for v in sys.argv[4].split(",")) if len(sys.argv) > 4 else (5, 20)
    run(ds, specs, methods, n)
