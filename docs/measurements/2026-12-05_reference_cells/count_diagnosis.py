"""Where the BM white cells' count error at 5 labels/class comes from: the mean predicted and
true percent per class over 10 normal-blood folders of the validation part, per method.

    python count_diagnosis.py runs/feat_bm/features.npz EOS,LYT,MON,NGS 5 normal_blood
"""
import sys, numpy as np, warnings
warnings.filterwarnings("ignore")
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import lab_parts, draw_folder, mix_fractions, count_error
from cellssl_jax.fewshot.sampling import sample_per_class
from cellssl_jax.fewshot.differential import differential
from sklearn.metrics import balanced_accuracy_score
path, classes, n, mix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fit, val = lab_parts(load_features(path), "validation", classes.split(",") if classes != "all" else None)
names = fit.class_names
methods = ["lr", "lr+em", "lr+acc", "lr+fold+sslda+ens+gate+em", "lr+fold+sslda+ens+gate+em+soften", "lr+fold+sslda+ens+gate+acc", "lr+em+soften"]
res = {m: [] for m in methods}; truths = []
for d in range(10):
    rng = np.random.default_rng(500 + d)
    lab = sample_per_class(fit.labels, n, rng)
    folder = draw_folder(val.labels, mix_fractions(mix, names, rng), 800, rng)
    y = val.labels[folder]; truths.append(100 * np.bincount(y, minlength=len(names)) / len(y))
    for m in methods:
        r = differential(fit.features[lab], fit.labels[lab], val.features[folder], names, m, interval=False)
        res[m].append((r.percent, balanced_accuracy_score(y, r.predicted), count_error(y, r.percent)[0]))
print(names, "folder", len(folder), "true %", np.mean(truths, 0).round(1))
for m in methods:
    p = np.mean([a for a, _, _ in res[m]], 0)
    print(f"{m:38s} pred % {p.round(1)}  BA {100*np.mean([b for _, b, _ in res[m]]):.1f} count {np.mean([c for _, _, c in res[m]]):.2f}")
