import sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts, rng_for, sample_per_class
from cellssl_jax.fewshot.lab import mix_fractions, draw_folder, LAB_STREAM
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import sslda_var  # noqa: F401 (patches the LDA; SSLDA_ANCHOR unset = the shipped LDA)
from cellssl_jax.fewshot.differential import differential
f = load_features(sys.argv[1]); methods = sys.argv[2].split(","); n = int(sys.argv[3]); mix = sys.argv[4]
which = builder_parts(f.paths, f.labels, f.class_names)
fit, val = np.flatnonzero(which == "fit"), np.flatnonzero(which == "validation")
X, y = f.features, f.labels
C = len(f.class_names)
rec = {m: [] for m in methods}
for rep in range(8):
    rng = rng_for(0, LAB_STREAM, n, rep)
    lab = fit[sample_per_class(y[fit], n, rng)]
    fr = mix_fractions(mix, f.class_names, rng)
    folder = val[draw_folder(y[val], fr, 800, rng)]
    for m in methods:
        r = differential(X[lab], y[lab], X[folder], f.class_names, m, interval=False)
        p = r.predicted; t = y[folder]
        rec[m].append([np.mean(p[t == c] == c) if (t == c).any() else np.nan for c in range(C)])
print("class        ", " ".join(f"{c[:6]:>7s}" for c in f.class_names))
for m in methods:
    a = np.nanmean(np.array(rec[m]), 0)
    print(f"{m[:28]:28s}", " ".join(f"{100*v:7.1f}" for v in a), f" BA {100*np.nanmean(a):.1f}")
