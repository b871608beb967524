"""Probe (validation only): the default method with another laboratory's cells added as labels.

Each domain is standardised on its own cells (BM: labelled + folder; PBC: its fit part), then
k PBC fit-part cells per shared type (neutrophil -> NGS, lymphocyte -> LYT, monocyte -> MON,
eosinophil -> EOS, ig -> PMO) join BM's 5 labelled cells per class, and `differential` runs as
`classify` would. Balanced accuracy and count error (mean over classes, points) on BM
validation folders, the same draws for every row.

    python reference_default.py runs/feat_pbc/features.npz runs/feat_bm/features.npz DRAWS MIX N
"""

import sys

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from cellssl_jax.fewshot.differential import differential
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import count_error, draw_folder, lab_parts, mix_fractions
from cellssl_jax.fewshot.sampling import sample_per_class

MAP = {"NGS": "neutrophil", "LYT": "lymphocyte", "MON": "monocyte", "EOS": "eosinophil",
       "PMO": "ig"}
METHOD = "lr+fold+sslda+ens+gate+em+soften"


def standardise(x, ref):
    x, ref = x.astype(np.float64), ref.astype(np.float64)
    return np.clip((x - ref.mean(0)) / (ref.std(0) + 1e-6), -8, 8)


def main():
    pbc_file, bm_file, draws, mix, n = sys.argv[1:6]
    draws, n = int(draws), int(n)
    pbc_fit, _ = lab_parts(load_features(pbc_file), "validation")
    bm_fit, bm_val = lab_parts(load_features(bm_file), "validation")
    names = bm_fit.class_names
    z_pbc = standardise(pbc_fit.features, pbc_fit.features)
    ref_y = np.full(len(pbc_fit.labels), -1)
    for c, name in enumerate(names):
        if name in MAP:
            ref_y[pbc_fit.labels == pbc_fit.class_names.index(MAP[name])] = c
    rows = {}
    for d in range(draws):
        rng = np.random.default_rng(1000 + d)
        lab = sample_per_class(bm_fit.labels, n, rng)
        folder = draw_folder(bm_val.labels, mix_fractions(mix, names, rng), 800, rng)
        y_lab, y_fold = bm_fit.labels[lab], bm_val.labels[folder]
        x_lab, x_fold = bm_fit.features[lab], bm_val.features[folder]
        both = np.concatenate([x_lab, x_fold])
        z_lab, z_fold = standardise(x_lab, both), standardise(x_fold, both)
        variants = {"default": (x_lab, y_lab, x_fold), "default, standardised": (z_lab, y_lab, z_fold)}
        for k in (5, 20, 100):
            picked = np.flatnonzero(ref_y >= 0)
            picked = picked[sample_per_class(ref_y[picked], k, rng)]
            variants[f"+ref {k}/class"] = (np.concatenate([z_lab, z_pbc[picked]]),
                                          np.concatenate([y_lab, ref_y[picked]]), z_fold)
        for name, (xl, yl, xf) in variants.items():
            res = differential(xl, yl, xf, names, METHOD, interval=False)
            rows.setdefault(name, []).append(
                (balanced_accuracy_score(y_fold, res.predicted),
                 count_error(y_fold, res.percent)[0]))
    for name, v in rows.items():
        v = np.array(v)
        print(f"{mix} n={n} {name}: balanced accuracy {100 * v[:, 0].mean():.1f} +- "
              f"{100 * v[:, 0].std():.1f}, count error {v[:, 1].mean():.2f}", flush=True)


if __name__ == "__main__":
    main()
