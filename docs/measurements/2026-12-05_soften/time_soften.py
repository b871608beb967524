"""What `soften` costs where it acts: 10,000 folder cells drawn (with replacement) from the PBC
dev features with the normal-blood mix, 20 labelled cells per class; the default method with
and without soften, posteriors alone and the whole differential (CV + refit interval); best of
2. Run from the repository root with OPENBLAS_NUM_THREADS=1."""
import json, os, time
import numpy as np
from cellssl_jax.fewshot.differential import differential, posteriors
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import mix_fractions
from cellssl_jax.fewshot.sampling import sample_per_class

f = load_features("runs/feat4/pbc/features.npz")
rng = np.random.default_rng(0)
lab = sample_per_class(f.labels, 20, rng)
rest = np.setdiff1d(np.arange(len(f.labels)), lab)
p = mix_fractions("normal_blood", f.class_names)
y = rng.choice(len(p), size=10000, p=p)
folder = np.array([rng.choice(rest[f.labels[rest] == c]) for c in y])
x_lab, y_lab, x = f.features[lab], f.labels[lab], f.features[folder]
out = {"cells": 10000, "n": 20, "load_average": os.getloadavg()}
for m in ("lr+fold+sslda+ens+gate+em", "lr+fold+sslda+ens+gate+em+soften"):
    best_p = best_d = 1e9
    for _ in range(2):
        t = time.perf_counter(); _, prior = posteriors(m, x_lab, y_lab, x, len(f.class_names))
        best_p = min(best_p, time.perf_counter() - t)
        t = time.perf_counter(); d = differential(x_lab, y_lab, x, f.class_names, m)
        best_d = min(best_d, time.perf_counter() - t)
    err = float(np.abs(d.percent - 100 * np.bincount(y, minlength=len(p)) / len(y)).mean())
    out[m] = {"posteriors_s": round(best_p, 2), "differential_s": round(best_d, 2), "count_error": round(err, 2)}
    print(m, out[m], flush=True)
print(json.dumps(out))
