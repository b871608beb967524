"""The lab protocol's draws (as `evaluate lab`: labelled cells from the fit part, folders from
`--part`), each method fitted on the labelled cells as read and on the same cells in their 8
orientations (encoder columns from views.py, colour and cell shape repeated: they do not depend
on orientation). The cross-validated accuracy that `gate` and `soften` read is the labelled
cells' own (each cell's 8 views get its out-of-fold prediction), so views never leak across folds.

    python views_lab.py runs/feat_bm/features.npz runs/views_bm.npz validation 5,20 10 [WHITE]
"""
import sys

import numpy as np
from joblib import Parallel, delayed

from cellssl_jax.fewshot.differential import (
    DEFAULT_METHOD,
    Method,
    cross_validated,
    differential,
    posteriors,
)
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.lab import (
    DEFAULT_MIXES,
    LAB_STREAM,
    draw_folder,
    lab_parts,
    mix_fractions,
    score,
)
from cellssl_jax.fewshot.sampling import rng_for, sample_per_class

METHODS = ("lr", DEFAULT_METHOD)


def with_views(x, views):
    """[N*8, D]: each cell's 8 orientations (encoder columns) beside its other columns."""
    d = views.shape[2]
    rows = np.repeat(x, 8, axis=0)
    rows[:, :d] = views.reshape(-1, d)
    return rows


def one_draw(x_lab, y_lab, v_lab, x_q, y_q, names, n, mix, rep):
    rng = rng_for(0, LAB_STREAM, n, rep)
    lab = sample_per_class(y_lab, n, rng)
    folder = draw_folder(y_q, mix_fractions(mix, names, rng), 800, rng)
    truth, rows = y_q[folder], []
    for m in METHODS:
        r = differential(x_lab[lab], y_lab[lab], x_q[folder], names, m)
        rows.append((m, "as read", n, mix, rep, score(truth, r.predicted, r.percent)))
        parsed = Method.parse(m)
        cv_pred = cross_validated(parsed, x_lab[lab], y_lab[lab])[0]
        proba, prior = posteriors(parsed, with_views(x_lab[lab], v_lab[lab]),
                                  np.repeat(y_lab[lab], 8), x_q[folder], len(names),
                                  cv_pred=np.repeat(cv_pred, 8))
        pred = proba.argmax(axis=1)
        share = prior if prior is not None else np.bincount(pred, minlength=len(names)) / len(pred)
        rows.append((m, "8 views", n, mix, rep, score(truth, pred, 100 * share)))
    return rows


if __name__ == "__main__":
    f, v = load_features(sys.argv[1]), np.load(sys.argv[2])
    part, ns, repeats = sys.argv[3], [int(a) for a in sys.argv[4].split(",")], int(sys.argv[5])
    white = sys.argv[6].split(",") if len(sys.argv) > 6 else None
    fit, query = lab_parts(f, part)
    assert np.array_equal(f.features[v["index"]], fit.features)
    views = v["views"]
    if white:
        keep = np.isin(np.asarray(fit.class_names)[fit.labels], white)
        views = views[keep]
        fit, query = lab_parts(f, part, white)
    names = fit.class_names
    remap = np.array([names.index(c) for c in query.class_names])
    out = Parallel(n_jobs=2)(delayed(one_draw)(
        fit.features, fit.labels, views, query.features, remap[query.labels], names, n, mix, rep)
        for n in ns for mix in DEFAULT_MIXES for rep in range(repeats))
    table = {}
    for batch in out:
        for m, how, n, mix, _rep, s in batch:
            table.setdefault((mix, n, m, how), []).append(s)
    print("mix | n | method | read | balanced accuracy % | count error (points) | macro-F1 %")
    for (mix, n, m, how), ss in sorted(table.items()):
        ba = np.array([s["balanced_accuracy"] for s in ss]) * 100
        ce = np.array([s["count_error_mean"] for s in ss])
        f1 = np.array([s["macro_f1"] for s in ss]) * 100
        print(f"{mix} | {n} | {m} | {how} | {ba.mean():.1f} +- {ba.std():.1f} | "
              f"{ce.mean():.2f} | {f1.mean():.1f}")
