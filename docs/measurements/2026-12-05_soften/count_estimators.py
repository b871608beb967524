"""Count estimators on the lab protocol's draws (validation part)."""
import sys, warnings, numpy as np
warnings.filterwarnings("ignore")
from threadpoolctl import threadpool_limits
from sklearn.metrics import balanced_accuracy_score
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.sampling import builder_parts, rng_for, sample_per_class
from cellssl_jax.fewshot.lab import mix_fractions, draw_folder, count_error, LAB_STREAM
from cellssl_jax.fewshot import differential as D
from cellssl_jax.fewshot.quantify import em_priors, temper
from cellssl_jax.fewshot.transduce import semi_supervised_lda
from joblib import Parallel, delayed

def estimators(xl, yl, xf, k):
    m = D.Method.parse(D.DEFAULT_METHOD)
    zl, zf = D.transformed(m, xl, yl, xf)
    p_lr = D._proba(D._fit_classifier("lr", zl, yl), zf, k)
    cv_pred, _, cv_proba = D.cross_validated(m, xl, yl)
    cvba = balanced_accuracy_score(yl, cv_pred)
    lda, mix = semi_supervised_lda(zl, yl, zf, k)
    ens = np.sqrt(np.clip(p_lr, 1e-300, None) * np.clip(lda, 1e-300, None)); ens /= ens.sum(1, keepdims=True)
    gate = cvba >= D.SSLDA_GATE
    ind = ens if gate else p_lr
    out = {}
    out["default"] = em_priors(ind, pseudo=1)[0]
    out["cc"] = np.bincount(ind.argmax(1), minlength=k) / len(ind)
    out["pcc"] = ind.mean(0)
    out["lda_mix"] = mix
    out["em_ens"] = em_priors(ens, pseudo=1)[0]
    out["em_lda"] = em_priors(lda, pseudo=1)[0]
    out["em_lr"] = em_priors(p_lr, pseudo=1)[0]
    for t in (2.0, 3.0):
        out[f"em_T{t:g}"] = em_priors(temper(ind, t), pseudo=1)[0]
    for k_ in ("pcc", "lda_mix", "em_ens", "em_lda", "em_lr"):
        out.pop(k_)
    t1 = out["default"]
    tv = 0.5 * np.abs(t1 - 1.0 / k).sum()
    for tau in (0.2, 0.3):
        out[f"gate{tau:g}"] = out["em_T3"] if tv > tau else t1
    cvacc = float((cv_pred == yl).mean())
    lo, hi = 1.0, 30.0
    if ind.max(1).mean() > cvacc:
        for _ in range(30):
            mid = (lo * hi) ** 0.5
            if temper(ind, mid).max(1).mean() > cvacc: lo = mid
            else: hi = mid
        tc = (lo * hi) ** 0.5
    else:
        tc = 1.0
    out["gconf"] = em_priors(temper(ind, tc), pseudo=1)[0] if tv > 0.2 else t1
    out["gconf2"] = em_priors(temper(ind, min(tc, 3.0)), pseudo=1)[0] if tv > 0.2 else t1
    out["tv"] = np.full(k, tv)
    out["tc"] = np.full(k, tc)
    return out, ind.argmax(1), cvba

def one(x_lab, y_lab, xq, yq, names, n, mix, rep):
    with threadpool_limits(1, user_api="blas"):
        rng = rng_for(SEED, LAB_STREAM, n, rep)
        lab = sample_per_class(y_lab, n, rng)
        fr = mix_fractions(mix, names, rng)
        folder = draw_folder(yq, fr, 800, rng)
        est, pred, cvba = estimators(x_lab[lab], y_lab[lab], xq[folder], len(names))
        truth = yq[folder]
        return {"n": n, "mix": mix, "cvba": cvba, "ba": balanced_accuracy_score(truth, pred),
                **{k: (count_error(truth, 100 * v)[0] if k not in ("tv", "tc") else v[0]) for k, v in est.items()}}

import os; SEED = int(os.environ.get("SEED", 0))
path, part = sys.argv[1], sys.argv[2]
ns = [int(v) for v in sys.argv[3].split(",")]
z = np.load(path); names = [str(c) for c in z["class_names"]]; paths = [str(p) for p in z["paths"]]
y = z["labels"].astype(np.int64); x = z["features"].astype(np.float64)
which = builder_parts(paths, y, names)
fi, qi = np.flatnonzero(which == "fit"), np.flatnonzero(which == part)
mixes = ["balanced", "normal_blood", "dirichlet"]
rows = Parallel(n_jobs=2)(delayed(one)(x[fi], y[fi], x[qi], y[qi], names, n, mix, r)
                          for n in ns for mix in mixes for r in range(int(sys.argv[4]) if len(sys.argv) > 4 else 5))
keys = [k for k in rows[0] if k not in ("n", "mix")]
print(f"{'n':>3} {'mix':13s} " + " ".join(f"{k:>9s}" for k in keys))
for n in ns:
    for mix in mixes:
        rs = [r for r in rows if r["n"] == n and r["mix"] == mix]
        print(f"{n:3d} {mix:13s} " + " ".join(f"{np.mean([r[k] for r in rs]):9.2f}" for k in keys))
