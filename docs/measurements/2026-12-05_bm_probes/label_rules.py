"""Label-rule variants on the lab protocol's draws (validation part), balanced accuracy."""
import sys, warnings, time
import numpy as np
warnings.filterwarnings("ignore")
from threadpoolctl import threadpool_limits
from joblib import Parallel, delayed
from sklearn.metrics import balanced_accuracy_score
from sklearn.linear_model import LogisticRegression
from sklearn.decomposition import PCA
from sklearn.covariance import LedoitWolf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts, rng_for, sample_per_class
from cellssl_jax.fewshot.lab import LAB_STREAM, mix_fractions, draw_folder
from cellssl_jax.fewshot.differential import posteriors, DEFAULT_METHOD
from cellssl_jax.fewshot.power import YeoJohnson

BLOCKS = [(0, 128), (128, 224), (224, 351)]

def yj(xl, xf):
    t = YeoJohnson().fit(np.vstack([xl, xf]))
    return t.transform(xl), t.transform(xf)

def lr(zl, y, zf, C=2.5):
    m = LogisticRegression(C=C, class_weight="balanced", max_iter=10000).fit(zl, y)
    return m.predict(zf)

def V_default(xl, y, xf): return posteriors(DEFAULT_METHOD, xl, y, xf, K)[0].argmax(1)
def V_lr(xl, y, xf):
    zl, zf = yj(xl, xf); return lr(zl, y, zf)
def V_blockw(xl, y, xf):
    zl, zf = yj(xl, xf)
    w = np.concatenate([np.full(b - a, 1 / np.sqrt(b - a)) for a, b in BLOCKS]) * np.sqrt(351 / 3)
    return lr(zl * w, y, zf * w)
def _white(xl, xf, k):
    zl, zf = yj(xl, xf)
    p = PCA(k).fit(zf)
    ul, uf = p.transform(zl), p.transform(zf)
    cov = LedoitWolf().fit(uf).covariance_
    e, v = np.linalg.eigh(cov); w = v / np.sqrt(e)
    return ul @ w, uf @ w
def V_ncm(k):
    def f(xl, y, xf):
        ul, uf = _white(xl, xf, k)
        mu = np.stack([ul[y == c].mean(0) for c in range(K)])
        d = ((uf[:, None] - mu[None]) ** 2).sum(-1)
        return d.argmin(1)
    f.__name__ = f"ncm_white{k}"; return f
def V_lrw(k):
    def f(xl, y, xf):
        ul, uf = _white(xl, xf, k); return lr(ul, y, uf, C=0.1)
    f.__name__ = f"lr_white{k}"; return f
def V_slda(xl, y, xf):
    zl, zf = yj(xl, xf)
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=np.full(K, 1 / K)).fit(zl, y).predict(zf)

def one(x_lab, y_lab, x_q, y_q, names, n, mix, rep, variants):
    rng = rng_for(0, LAB_STREAM, n, rep)
    lab = sample_per_class(y_lab, n, rng)
    fr = mix_fractions(mix, names, rng)
    folder = draw_folder(y_q, fr, 800, rng)
    out = {}
    with threadpool_limits(1):
        for v in variants:
            pred = v(x_lab[lab], y_lab[lab], x_q[folder])
            out[v.__name__] = balanced_accuracy_score(y_q[folder], pred)
    return n, mix, out


from sklearn.model_selection import cross_val_predict, StratifiedKFold, LeaveOneOut
SUBSETS = {"all": [0, 1, 2], "x": [0], "c": [1], "s": [2], "xc": [0, 1], "xs": [0, 2], "cs": [1, 2]}
def cols(ids): return np.concatenate([np.arange(*BLOCKS[i]) for i in ids])
def logp(zl, y, zf, C=2.5):
    m = LogisticRegression(C=C, class_weight="balanced", max_iter=10000).fit(zl, y)
    return m.predict_log_proba(zf)
def V_poe(xl, y, xf):
    zl, zf = yj(xl, xf)
    return sum(logp(zl[:, cols([i])], y, zf[:, cols([i])]) for i in range(3)).argmax(1)
def V_poe4(xl, y, xf):
    zl, zf = yj(xl, xf)
    return (sum(logp(zl[:, cols([i])], y, zf[:, cols([i])]) for i in range(3)) + logp(zl, y, zf)).argmax(1)
def V_cvsel(xl, y, xf):
    zl, zf = yj(xl, xf)
    cv = StratifiedKFold(min(5, np.bincount(y).min()), shuffle=True, random_state=0)
    best, bs = -1, None
    for name, ids in SUBSETS.items():
        c = cols(ids)
        p = cross_val_predict(LogisticRegression(C=2.5, class_weight="balanced", max_iter=10000), zl[:, c], y, cv=cv)
        s = balanced_accuracy_score(y, p)
        if s > best + 1e-9: best, bs = s, c
    return lr(zl[:, bs], y, zf[:, bs])

if __name__ == "__main__":
    path, names_v = sys.argv[1], sys.argv[2].split(",")
    ns = [int(v) for v in sys.argv[3].split(",")]
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    table = {"default": V_default, "lr": V_lr, "blockw": V_blockw, "slda": V_slda, "poe": V_poe, "poe4": V_poe4, "cvsel": V_cvsel}
    for k in (16, 32, 64):
        table[f"ncm_white{k}"] = V_ncm(k); table[f"lr_white{k}"] = V_lrw(k)
    for nm, f in table.items(): f.__name__ = nm
    variants = [table[v] for v in names_v]
    f = load_features(path)
    which = builder_parts(f.paths, f.labels, f.class_names)
    K = len(f.class_names)
    fi, vi = np.flatnonzero(which == "fit"), np.flatnonzero(which == "validation")
    mixes = ["balanced", "normal_blood", "dirichlet"]
    t = time.time()
    res = Parallel(2)(delayed(one)(f.features[fi], f.labels[fi], f.features[vi], f.labels[vi], f.class_names, n, m, r, variants)
                      for n in ns for m in mixes for r in range(reps))
    for n in ns:
        for m in mixes + ["mean"]:
            rows = [o for nn, mm, o in res if nn == n and (mm == m or m == "mean")]
            print(f"n={n:2d} {m:13s} " + "  ".join(f"{v}={100*np.mean([o[v] for o in rows]):.1f}" for v in names_v), flush=True)
    print(f"{time.time()-t:.0f}s")
