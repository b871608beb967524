"""Does bounding the Yeo-Johnson output at 10 standard deviations change the lab protocol?

Validation parts only; `power.LIMIT = inf` is the transform before (scikit-learn's
extrapolation), 10 the bound. The same draws for both.

    python transform_bound.py runs/feat_pbc/features.npz runs/feat_bm/features.npz
"""

import sys

import numpy as np

from cellssl_jax.fewshot import power
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import lab_parts, lab_protocol

METHODS = ["lr", "lr+fold+sslda+ens+gate+em+soften"]

for path in sys.argv[1:3]:
    fit, val = lab_parts(load_features(path), "validation")
    for limit in (np.inf, 10.0):
        power.LIMIT = limit
        ev = lab_protocol(fit, val, METHODS, [5, 20, 50], ["normal_blood", "balanced"], 10)
        for row in ev.summary():
            print(f"{path.split('/')[-2]} limit={limit} {row['method']:34s} n={row['n']:2d} "
                  f"{row['mix']:13s} BA {100 * row['balanced_accuracy']:.1f} "
                  f"count {row['count_error_mean']:.2f}", flush=True)
