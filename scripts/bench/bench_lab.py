"""How long the differential's methods take on a large folder (issue 21: the transductive and
prior-correction steps <= 5 s for 10,000 cells on 2 cores).

Times `fewshot.differential.posteriors` (features treatment, classifier, transduction, prior
correction) and the whole `differential` (+ the labelled cells' cross-validation and the 95 %
interval's bootstrap) per method, on real features when --features_file is given (labelled
cells drawn per class, the folder drawn with replacement up to --cells), else on Gaussian
blobs of the same shape. The extra time of a method over plain `lr` is what its transductive
and prior-correction steps cost. Best of --repeats runs; on a shared machine say so.

    python scripts/bench/bench_lab.py --features_file runs/feat_pbc/features.npz \\
        --cells 10000 --n 20 --methods svm,lr,lr+em
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from cellssl_jax.fewshot.differential import DEFAULT_METHOD, LEGACY_METHOD, differential, posteriors
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import sample_per_class


def data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    if args.features_file:
        feats = load_features(args.features_file)
        x, y = feats.features[feats.labelled], feats.labels[feats.labelled]
        lab = sample_per_class(y, args.n, rng)
        folder = rng.choice(np.setdiff1d(np.arange(len(y)), lab), size=args.cells)
        return x[lab], y[lab], x[folder], feats.class_names
    centres = rng.normal(size=(args.classes, args.dim)) * 2
    y_lab = np.repeat(np.arange(args.classes), args.n)
    y = rng.integers(0, args.classes, args.cells)
    return (centres[y_lab] + rng.normal(size=(len(y_lab), args.dim)), y_lab,
            centres[y] + rng.normal(size=(args.cells, args.dim)),
            [f"c{k}" for k in range(args.classes)])


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features_file", type=Path, help="real features (.npz); else blobs")
    parser.add_argument("--cells", type=int, default=10000, help="folder cells")
    parser.add_argument("--n", type=int, default=20, help="labelled cells per class")
    parser.add_argument("--classes", type=int, default=8, help="blobs only")
    parser.add_argument("--dim", type=int, default=224, help="blobs only")
    parser.add_argument("--methods", default=f"{LEGACY_METHOD},lr,{DEFAULT_METHOD}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()
    x_lab, y_lab, x_fold, names = data(args)
    rows = []
    for method in dict.fromkeys(args.methods.split(",")):
        t_post = best_of(args.repeats, lambda m=method: posteriors(m, x_lab, y_lab, x_fold,
                                                                   len(names)))
        t_all = best_of(args.repeats, lambda m=method: differential(x_lab, y_lab, x_fold,
                                                                    names, m))
        rows.append({"method": method, "posteriors_s": t_post, "differential_s": t_all})
        print(f"{method:<28} posteriors {t_post:6.2f} s   differential (+ CV, interval) "
              f"{t_all:6.2f} s", flush=True)
    base = next((r for r in rows if r["method"] == "lr"), None)
    if base:
        for r in rows:
            print(f"{r['method']:<28} over lr: {r['posteriors_s'] - base['posteriors_s']:+6.2f} s")
    info = {"cells": args.cells, "n": args.n, "labelled": len(y_lab), "dim": x_fold.shape[1],
            "features_file": str(args.features_file or "blobs"), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "rows": rows}
    print(json.dumps({k: v for k, v in info.items() if k != "rows"}))
    if args.json:
        args.json.write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
