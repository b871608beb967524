"""Large folders: does soften hold when the folder has 10,000 cells (sampling noise small, the
estimate's bias what is left)? Labelled cells from the fit part, folders drawn with replacement
from the VALIDATION part with a mix, 5 draws; posteriors only (no interval). Run from the
repository root with OPENBLAS_NUM_THREADS=1: python large_folders.py FEATURES [N,...]"""
import sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from cellssl_jax.fewshot.differential import posteriors
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import mix_fractions
from cellssl_jax.fewshot.sampling import builder_parts, sample_per_class

f = load_features(sys.argv[1])
ns = [int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "5,20").split(",")]
which = builder_parts(f.paths, f.labels, f.class_names)
fit, val = np.flatnonzero(which == "fit"), np.flatnonzero(which == "validation")
k = len(f.class_names)
methods = ("lr+fold+sslda+ens+gate+em", "lr+fold+sslda+ens+gate+em+soften")
for mix in ("normal_blood", "dirichlet"):
    for n in ns:
        errs = {m: [] for m in methods}
        for draw in range(5):
            rng = np.random.default_rng(1000 + draw)
            lab = fit[sample_per_class(f.labels[fit], n, rng)]
            p = mix_fractions(mix, f.class_names, rng)
            y = rng.choice(k, size=10000, p=p)
            folder = np.array([rng.choice(val[f.labels[val] == c]) for c in y])
            truth = 100 * np.bincount(y, minlength=k) / len(y)
            for m in methods:
                _, prior = posteriors(m, f.features[lab], f.labels[lab], f.features[folder], k)
                errs[m].append(np.abs(100 * prior - truth).mean())
        print(f"{mix:13s} n={n:2d} " + "  ".join(f"{m.split('+')[-1]:6s} {np.mean(e):.2f} ({' '.join(f'{v:.2f}' for v in e)})" for m, e in errs.items()), flush=True)
