"""Probe (validation only): do another laboratory's labelled cells help BM at 5 labels/class?

The PBC fit part's cells of the five types BM shares (neutrophil -> NGS, lymphocyte -> LYT,
monocyte -> MON, eosinophil -> EOS, ig -> PMO) join BM's 5 labelled cells per class, each
domain standardised on its own cells (BM: labelled + folder; PBC: all its fit cells), with a
weight per reference cell so that each class's reference weighs `w` times its labelled cells.
LR (C = 0.1) on the standardised features (a Yeo-Johnson on the union overflows). Scored on BM validation folders
(balanced: every validation cell; normal blood via the lab protocol's draw), balanced accuracy.

    python reference_probe.py runs/feat_pbc/features.npz runs/feat_bm/features.npz DRAWS [BLOCKS [MIXES]]
"""

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from cellssl_jax.fewshot.differential import differential
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import draw_folder, lab_parts, mix_fractions
from cellssl_jax.fewshot.sampling import sample_per_class

MAP = {"NGS": "neutrophil", "LYT": "lymphocyte", "MON": "monocyte", "EOS": "eosinophil",
       "PMO": "ig"}
BLOCKS = {"all": slice(0, 351), "encoder": slice(0, 128), "shape": slice(224, 351)}


def standardise(x, ref):
    x, ref = x.astype(np.float64), ref.astype(np.float64)
    mu, sd = ref.mean(0), ref.std(0) + 1e-6
    return np.clip((x - mu) / sd, -8, 8)


def lr_fit(x, y, w):
    model = LogisticRegression(C=0.1, max_iter=2000)
    model.fit(x, y, sample_weight=w)
    return model.predict


def main():
    pbc_file, bm_file, draws = sys.argv[1], sys.argv[2], int(sys.argv[3])
    blocks = sys.argv[4].split(",") if len(sys.argv) > 4 else list(BLOCKS)
    mixes = sys.argv[5].split(",") if len(sys.argv) > 5 else ["balanced", "normal_blood"]
    pbc_fit, _ = lab_parts(load_features(pbc_file), "validation")
    bm_fit, bm_val = lab_parts(load_features(bm_file), "validation")
    names = bm_fit.class_names
    ref_rows, ref_y = [], []
    for c, name in enumerate(names):
        if name in MAP:
            idx = np.flatnonzero(pbc_fit.labels == pbc_fit.class_names.index(MAP[name]))
            ref_rows.append(idx)
            ref_y.append(np.full(len(idx), c))
    ref_idx, ref_y = np.concatenate(ref_rows), np.concatenate(ref_y)
    x_ref_all = pbc_fit.features
    for block in blocks:
        cols = BLOCKS[block]
        for mix in mixes:
            scores = {}
            for d in range(draws):
                rng = np.random.default_rng(1000 + d)
                lab = sample_per_class(bm_fit.labels, 5, rng)
                if mix == "balanced":
                    folder = np.arange(len(bm_val.labels))
                else:
                    folder = draw_folder(bm_val.labels, mix_fractions(mix, names, rng), 800, rng)
                x_lab, y_lab = bm_fit.features[lab][:, cols], bm_fit.labels[lab]
                x_fold, y_fold = bm_val.features[folder][:, cols], bm_val.labels[folder]
                bm_ref = np.concatenate([x_lab, x_fold])
                z_lab, z_fold = standardise(x_lab, bm_ref), standardise(x_fold, bm_ref)
                z_ref = standardise(x_ref_all[:, cols], x_ref_all[:, cols])[ref_idx]
                s = scores.setdefault
                s("lr", []).append(balanced_accuracy_score(
                    y_fold, lr_fit(z_lab, y_lab, np.ones(len(y_lab)))(z_fold)))
                s("ref only", []).append(balanced_accuracy_score(
                    y_fold, lr_fit(z_ref, ref_y, np.ones(len(ref_y)))(z_fold)))
                for w in (1.0, 3.0, 30.0):
                    per = np.bincount(ref_y, minlength=len(names)).astype(float)
                    wr = w * 5 / per[ref_y]
                    pred = lr_fit(np.concatenate([z_lab, z_ref]), np.concatenate([y_lab, ref_y]),
                                  np.concatenate([np.ones(len(y_lab)), wr]))(z_fold)
                    s(f"lr+ref w={w}", []).append(balanced_accuracy_score(y_fold, pred))
                if block == "all":
                    res = differential(bm_fit.features[lab], y_lab, bm_val.features[folder],
                                       names, "lr+fold+sslda+ens+gate+em+soften", interval=False)
                    s("default", []).append(balanced_accuracy_score(y_fold, res.predicted))
            print(block, mix, "  ".join(f"{k} {100 * np.mean(v):.1f}+-{100 * np.std(v):.1f}"
                                        for k, v in scores.items()), flush=True)


if __name__ == "__main__":
    main()
