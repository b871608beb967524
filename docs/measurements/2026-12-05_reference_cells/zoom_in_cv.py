"""Balanced accuracy of LR (YeoJohnson, C = 0.5, balanced) by stratified 5-fold CV over all BM
cells: the encoder rows as extracted (z = 1) and zoomed in, alone and beside colour + cell shape.

    python zoom_in_cv.py runs/feat_bm/features.npz runs/bm_zoom1.25.npy ...
"""
import sys
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline

from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.power import YeoJohnson

warnings.filterwarnings("ignore")
f = load_features(sys.argv[1])
for name, x in [("z=1", f.features[:, :128])] + [(p, np.load(p)) for p in sys.argv[2:]]:
    row = []
    for xx in (x, np.concatenate([x, f.features[:, 128:]], 1)):
        m = make_pipeline(YeoJohnson(), LogisticRegression(C=0.5, class_weight="balanced",
                                                           max_iter=5000))
        pred = cross_val_predict(m, xx, f.labels, cv=StratifiedKFold(5, shuffle=True,
                                                                     random_state=0))
        row.append(100 * balanced_accuracy_score(f.labels, pred))
    print(f"{name:28s} encoder {row[0]:.1f}  all {row[1]:.1f}", flush=True)
