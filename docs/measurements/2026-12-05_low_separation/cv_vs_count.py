"""Does the labelled cells' cross-validated balanced accuracy (what `classify` prints) tell a lab
when its count is unreliable? Validation parts; the default method; per draw the CV balanced
accuracy, the folder's balanced accuracy and the count error (mean over classes, points).

    python cv_vs_count.py FEATURES.npz [CLASSES|all] OUT.csv
"""
import csv
import sys
import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from cellssl_jax.fewshot.differential import differential
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import count_error, draw_folder, lab_parts, mix_fractions
from cellssl_jax.fewshot.sampling import sample_per_class

warnings.filterwarnings("ignore")
path, classes, out = sys.argv[1], sys.argv[2], sys.argv[3]
fit, val = lab_parts(load_features(path), "validation",
                     None if classes == "all" else classes.split(","))
rows = []
for n in (5, 10, 20):
    for mix in ("normal_blood", "dirichlet", "balanced"):
        for d in range(8):
            rng = np.random.default_rng([7, n, d, len(mix)])
            lab = sample_per_class(fit.labels, n, rng)
            folder = draw_folder(val.labels, mix_fractions(mix, fit.class_names, rng), 800, rng)
            y = val.labels[folder]
            r = differential(fit.features[lab], fit.labels[lab], val.features[folder],
                             fit.class_names, seed=d)
            rows.append({"n": n, "mix": mix, "draw": d,
                         "cv_balanced_accuracy": balanced_accuracy_score(r.cv_true, r.cv_pred),
                         "folder_balanced_accuracy": balanced_accuracy_score(y, r.predicted),
                         "count_error": count_error(y, r.percent)[0],
                         "classes": len(fit.class_names)})
            print(rows[-1], flush=True)
with open(out, "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
