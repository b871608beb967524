"""Coverage of a labelled-cell bootstrap interval (refit LR + EM per replicate)."""
import sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from sklearn.linear_model import LogisticRegression
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts, rng_for, sample_per_class
from cellssl_jax.fewshot.lab import mix_fractions, draw_folder, LAB_STREAM
from cellssl_jax.fewshot.differential import differential, DEFAULT_METHOD
from cellssl_jax.fewshot.classifiers import preprocessor
from cellssl_jax.fewshot.quantify import em_priors
f = load_features(sys.argv[1]); B = int(sys.argv[2])
which = builder_parts(f.paths, f.labels, f.class_names)
fit, val = np.flatnonzero(which == "fit"), np.flatnonzero(which == (sys.argv[3] if len(sys.argv) > 3 else "validation"))
X, y = f.features, f.labels
C = len(f.class_names)
def boot(xl, yl, xf, rng):
    pre = preprocessor("paper-code"); pre.fit(np.vstack([xl, xf]))
    zl, zf = pre.transform(xl), pre.transform(xf)
    out = []
    for b in range(B):
        idx = np.concatenate([rng.choice(np.flatnonzero(yl == c), (yl == c).sum()) for c in range(C)])
        fidx = rng.choice(len(zf), len(zf))
        m = LogisticRegression(C=2.5, class_weight="balanced", max_iter=2000).fit(zl[idx], yl[idx])
        p = np.zeros((len(zf), C)); p[:, m.classes_] = m.predict_proba(zf[fidx])
        out.append(em_priors(p)[0])
    return np.array(out)
res = {}
for n in (5, 10, 20, 50):
    for mix in ("balanced", "normal_blood", "dirichlet"):
        for rep in range(6):
            rng = rng_for(0, LAB_STREAM, n, rep)
            lab = fit[sample_per_class(y[fit], n, rng)]
            fr = mix_fractions(mix, f.class_names, rng)
            folder = val[draw_folder(y[val], fr, 800, rng)]
            r = differential(X[lab], y[lab], X[folder], f.class_names, DEFAULT_METHOD, interval=True, seed=rep)
            truth = np.bincount(y[folder], minlength=C) / len(folder)
            share = r.percent / 100
            d = boot(X[lab], y[lab], X[folder], np.random.default_rng(rep))
            lo, hi = np.percentile(d, [2.5, 97.5], 0); med = np.median(d, 0)
            out = {"current": (r.low / 100, r.high / 100),
                   "boot": (np.minimum(lo, share), np.maximum(hi, share)),
                   "boot-shift": (np.clip(share + lo - med, 0, 1), share + hi - med),
                   }
            lo99, hi99 = np.percentile(d, [0.5, 99.5], 0)
            out["boot99"] = (np.minimum(lo99, share), np.maximum(hi99, share))
            for k in (1.25, 1.5):
                out[f"boot x{k}"] = (np.clip(np.minimum(med + k * (lo - med), share), 0, 1), np.maximum(med + k * (hi - med), share))
            for name, (a, b) in out.items():
                cov = np.mean((a <= truth + 1e-9) & (truth <= b + 1e-9))
                res.setdefault((n, mix, name), []).append((cov, np.mean(b - a) * 100))
for (n, mix, name), v in sorted(res.items()):
    v = np.array(v)
    print(f"n={n:2d} {mix:13s} {name:10s} coverage {100*v[:,0].mean():5.1f} %  width {v[:,1].mean():5.2f} pp", flush=True)
