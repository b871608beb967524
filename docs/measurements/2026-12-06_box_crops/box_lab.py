"""The lab protocol on the same cells read three ways (features files whose paths end in the
same class/file names): the parts are the original files' (re-encoded crops have other sha256
ids), rows aligned by name, so every file gets the same draws.

    python box_lab.py ORIGINAL.npz validation 5,20 10 name=FILE.npz ... [--classes a,b,...]
"""
import sys
from pathlib import Path

import numpy as np

from cellssl_jax.fewshot.differential import DEFAULT_METHOD
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import DEFAULT_MIXES, lab_protocol
from cellssl_jax.fewshot.sampling import builder_parts

METHODS = ("lr", DEFAULT_METHOD)


def key(p):
    return "/".join(Path(p).parts[-2:])


def aligned(f, names):
    where = {key(p): i for i, p in enumerate(f.paths)}
    return f.subset(np.array([where[n] for n in names]))


if __name__ == "__main__":
    args = sys.argv[1:]
    classes = args.pop(args.index("--classes") + 1).split(",") if "--classes" in args else None
    args = [a for a in args if a != "--classes"]
    orig = load_features(args[0])
    part, ns, repeats = args[1], [int(a) for a in args[2].split(",")], int(args[3])
    parts = builder_parts(orig.paths, orig.labels, orig.class_names)
    files = {"original": orig} | {a.split("=")[0]: load_features(a.split("=")[1])
                                   for a in args[4:]}
    names = [key(p) for p in orig.paths]
    print("read | features | mix | n | method | balanced accuracy % | count error (points)")
    for read, f in files.items():
        f = aligned(f, names)
        for cols, what in ((slice(None), "all"), (slice(128, 224), "colour")):
            g = type(f)(f.features[:, cols], f.labels, f.class_names, f.paths)
            fit, query = (g.subset(np.flatnonzero(parts == p)) for p in ("fit", part))
            if classes:
                fit, query = fit.only_classes(classes), query.only_classes(classes)
            methods = METHODS if what == "all" else ("lr",)
            ev = lab_protocol(fit, query, methods, ns, DEFAULT_MIXES, repeats, jobs=2)
            for row in ev.summary():
                print(f"{read} | {what} | {row['mix']} | {row['n']} | {row['method']} | "
                      f"{100 * row['balanced_accuracy']:.1f} | {row['count_error_mean']:.2f}")
