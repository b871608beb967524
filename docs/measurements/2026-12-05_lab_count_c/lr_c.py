"""Issue 21, third pass: the logistic regression's C (paper code: 2.5) on the lab protocol,
PBC and BM validation; LR_C=... patched into the classifier factory (jobs=1: same process)."""
import os, sys
import numpy as np
from sklearn.linear_model import LogisticRegression
import cellssl_jax.fewshot.classifiers as cl
import cellssl_jax.fewshot.differential as di
sys.path.insert(0, os.path.dirname(__file__))
import harness3
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.sampling import builder_parts
from cellssl_jax.fewshot.lab import lab_protocol

orig = cl.classifier
def patched(name, preset, *a, **k):
    if name == "lr":
        return LogisticRegression(C=float(os.environ["LR_C"]), class_weight="balanced", max_iter=10000)
    return orig(name, preset, *a, **k)
cl.classifier = di.classifier = patched

path, spec, methods = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
z = dict(np.load(path)); names = [str(c) for c in z["class_names"]]; paths = [str(p) for p in z["paths"]]
labels = z["labels"].astype(np.int64); which = builder_parts(paths, labels, names)
f = Features(harness3.variant(z, spec), labels, names, paths)
fit, val = f.subset(np.flatnonzero(which == "fit")), f.subset(np.flatnonzero(which == "validation"))
for c in sys.argv[4].split(","):
    os.environ["LR_C"] = c
    for s in lab_protocol(fit, val, methods, (5, 20), ("balanced", "normal_blood"), 5).summary():
        print(f"C={c:5s} {spec:18s} {s['method']:28s} n={s['n']:2d} {s['mix']:13s} "
              f"BA {100*s['balanced_accuracy']:.1f}  CE {s['count_error_mean']:.2f}", flush=True)
