"""Does labelling the cells `select` proposes beat labelling as many random cells?

Simulates a labeller with the known labels of a labelled features file (default: acevedo_pbc_dev
features, extracted once and cached under --out): for each budget (total cells labelled) and
seed, the proposed cells (k-means, k-center) or the same number of random cells are "labelled",
the paper-code SVM is fitted on them, and balanced accuracy is measured on all the other cells
(a class never labelled scores 0 for its cells). "random per class" draws budget / C cells of
every class; it needs the labels beforehand, so it is a reference, not an option for a lab.

    python scripts/bench/bench_select.py --out runs/bench_select                     # bundled
    python scripts/bench/bench_select.py --out runs/bench_select_ch --kind colorhist # baseline
    python scripts/bench/bench_select.py --out DIR --features F.npz                  # any file
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

from cellssl_jax import select
from cellssl_jax.data import shared_data_dir
from cellssl_jax.featurize import KINDS, featurize_folder, make_featurizer
from cellssl_jax.fewshot.classifiers import pipeline
from cellssl_jax.fewshot.features import Features, load_features
from cellssl_jax.fewshot.sampling import sample_per_class

METHODS = ("random", "kmeans", "kcenter", "random per class")


def choose(method: str, feats: Features, budget: int, seed: int) -> np.ndarray:
    """Indices of the `budget` cells the simulated labeller labels."""
    rng = np.random.default_rng(seed)
    if method == "random":
        return rng.choice(len(feats.labels), budget, replace=False)
    if method == "random per class":
        return sample_per_class(feats.labels, budget // len(feats.class_names), rng)
    return select.propose(feats.features, budget, method, seed)[0]


def score(feats: Features, chosen: np.ndarray) -> tuple[float, int]:
    """Balanced accuracy on the cells not chosen, and how many classes the chosen cells hold."""
    rest = np.setdiff1d(np.arange(len(feats.labels)), chosen)
    y = feats.labels[chosen]
    found = len(np.unique(y))
    if found < 2:  # nothing to fit: every cell gets the one known class
        pred = np.full(len(rest), y[0])
    else:
        pred = (
            pipeline("svm", "paper-code")
            .fit(feats.features[chosen], y)
            .predict(feats.features[rest])
        )
    return float(balanced_accuracy_score(feats.labels[rest], pred)), found


def features_for(args: argparse.Namespace) -> Features:
    if args.features:
        return load_features(args.features)
    cached = args.out / f"features_{args.kind}.npz"
    if not cached.exists():
        featurizer = make_featurizer(args.kind, args.encoder)
        return featurize_folder(args.images, featurizer, cached)[0]
    return load_features(cached)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder (and cache)")
    parser.add_argument("--features", type=Path, help="a labelled features file to use as is")
    parser.add_argument("--images", type=Path, default=shared_data_dir() / "acevedo_pbc_dev")
    parser.add_argument("--kind", choices=KINDS, default="xcit")
    parser.add_argument("--encoder", help="encoder file (default: the bundled encoder)")
    parser.add_argument("--budgets", default="16,40,80,200,400", help="total cells labelled")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        feats = features_for(args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    feats = feats.subset(np.flatnonzero(feats.labelled))
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = []
    jobs = [(b, m, s) for b in budgets for m in METHODS for s in range(args.seeds)]
    for budget, method, seed in tqdm(jobs, desc="bench_select"):
        start = time.perf_counter()
        chosen = choose(method, feats, budget, seed)
        bacc, found = score(feats, chosen)
        rows.append(
            dict(
                budget=budget,
                method=method,
                seed=seed,
                cells=len(chosen),
                balanced_accuracy=bacc,
                classes_labelled=found,
                seconds=time.perf_counter() - start,
            )
        )
    with open(args.out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Label selection benchmark: {feats.encoder} features of {len(feats.labels)} cells "
        f"({len(feats.class_names)} classes), paper-code SVM, {args.seeds} seeds",
        "",
        "Balanced accuracy (%) on the cells not labelled, mean ± std over seeds "
        "(classes among the labelled cells, mean).",
        "",
        "| cells labelled | " + " | ".join(METHODS) + " |",
        "|---" * (len(METHODS) + 1) + "|",
    ]
    for budget in budgets:
        cells = []
        for method in METHODS:
            got = [r for r in rows if r["budget"] == budget and r["method"] == method]
            ba = np.array([r["balanced_accuracy"] for r in got]) * 100
            found = np.mean([r["classes_labelled"] for r in got])
            cells.append(f"{ba.mean():.1f} ± {ba.std():.1f} ({found:.1f})")
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'summary.md'}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
