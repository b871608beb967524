"""The lab protocol on validation with the encoder's columns read zoomed in (zoom_in.py) in place
of the extracted ones: the default method, the same draws for every file.

    python zoom_in_lab.py FEATURES.npz [ZOOMED.npy ...] [--white EOS,LYT,MON,NGS]

With --white, only those classes are labelled and counted (as `evaluate lab --classes`).
"""
import sys

import numpy as np

from cellssl_jax.fewshot.features import Features, load_features
from cellssl_jax.fewshot.lab import lab_parts, lab_protocol

METHOD = "lr+fold+sslda+ens+gate+em+soften"
args = sys.argv[1:]
white = args.pop(args.index("--white") + 1).split(",") if "--white" in args else None
if white:
    args.remove("--white")
f = load_features(args[0])
for name in ["z=1", *args[1:]]:
    x = f.features.copy()
    if name != "z=1":
        x[:, :128] = np.load(name)
    g = Features(x, f.labels, f.class_names, f.paths, f.encoder, f.encoder_sha256, f.skipped,
                 f.source, f.read_size)
    fit, val = lab_parts(g, "validation", white)
    ev = lab_protocol(fit, val, [METHOD], [5, 20], ["normal_blood", "balanced", "dirichlet"], 10,
                      jobs=2)
    for r in ev.summary():
        print(f"{name:24s} n={r['n']:2d} {r['mix']:13s} BA {100 * r['balanced_accuracy']:.1f} "
              f"count {r['count_error_mean']:.2f}", flush=True)
