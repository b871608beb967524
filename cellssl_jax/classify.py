"""A lab's job: fit a classifier on a few labelled cells, classify a folder of unlabelled cells.

    python -m cellssl_jax.classify --labelled DIR --unlabelled DIR --out DIR

`--labelled` holds one sub-folder per class (a few cells each), `--unlabelled` the cells to
classify. Writes under `--out`: predictions.csv (every cell, its predicted class and the
probability of each class), counts.csv (the differential count: per class the cells labelled
with it, its percent and the 95 % interval of that percent), review.csv (the least sure
cells, by the margin between the two most probable classes, for a human to check),
skipped.csv (unreadable images, with the reason), flagged.csv (doubtful images that were
classified: greyscale, transparent, far larger than the read size), summary.json and
classify.log; prints a cross-validated accuracy on the labelled cells as a sanity number. The
folders are checked before any extraction, and the encoder's features come from the features
cache when it has them (`--no_cache` bypasses it).

Method (`--method`, cellssl_jax/fewshot/differential.py; docs/LAB_COUNT.md): by default the one
the lab protocol preferred on validation, which also uses the folder's own cells and corrects
the count for the folder's class mix (a classifier fitted on balanced labels over-calls the
rare classes). Today's rule before that, the paper's SVM with classify-and-count, is
`--method svm` (`--classifier svm|lr|knn`: that classifier alone). The percent's 95 % interval
comes from refitting on resampled labelled and folder cells (the default's EM count), or from a
parametric bootstrap of the adjusted count (other methods); summary.json says which.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellssl_jax.cache import cache_root
from cellssl_jax.cli import add_cache_flag, add_encoder_flag, add_features_flag, add_out_flag
from cellssl_jax.featurize import DEFAULT_KIND, make_featurizer
from cellssl_jax.fewshot.classifiers import CLASSIFIERS
from cellssl_jax.fewshot.differential import DEFAULT_METHOD, Method
from cellssl_jax.labelling import check_folders, classify_folders
from cellssl_jax.logs import fail, job

PROG = "python -m cellssl_jax.classify"


def run(
    labelled: str | Path,
    unlabelled: str | Path,
    out: str | Path,
    method: str = DEFAULT_METHOD,
    features: str = DEFAULT_KIND,
    encoder: str | Path | None = None,
    review: int = 20,
    cache: Path | None = None,
) -> dict:
    """The whole job -> the summary (also in `<out>/summary.json`); the folders are checked
    before the encoder is loaded. `cache`: the features cache folder (None: none)."""
    sources = check_folders(labelled, unlabelled, method)
    featurizer = make_featurizer(features, encoder, cache=cache)
    summary, _ = classify_folders(labelled, unlabelled, out, featurizer, method, review,
                                  sources)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labelled", required=True, help="folder with one sub-folder per class")
    parser.add_argument("--unlabelled", required=True, help="folder of cells to classify")
    add_out_flag(parser)
    add_encoder_flag(parser)
    parser.add_argument(
        "--method",
        default=None,
        help=f"how cells are labelled and counted (default {DEFAULT_METHOD}, validation's "
        "choice; 'svm' is the rule before it); steps joined by '+': svm|lr|knn, l2, fold, "
        "self, spread, em[P], acc, relabel (docs/LAB_COUNT.md)",
    )
    parser.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default=None,
        help="shorthand for --method <classifier>: the paper-code pipeline (PowerTransformer "
        "-> PCA -> SVC / LR / KNN) alone, classify and count",
    )
    add_features_flag(
        parser,
        help="xcit+colorhist+cellshape (default): the encoder's features beside colour "
        "histograms and the nucleus's shape, the best on the PBC and BM validation parts "
        "(docs/LAB_COUNT.md); xcit+colorhist: the default before; xcit: encoder only; "
        "colorhist: colour only",
    )
    parser.add_argument(
        "--review", type=int, default=20, help="how many least-sure cells review.csv lists"
    )
    add_cache_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.review < 0:
        fail(PROG, "--review must be >= 0")
    if args.method and args.classifier:
        fail(PROG, "give --method or --classifier, not both (--classifier X is --method X)")
    method = args.method or args.classifier or DEFAULT_METHOD
    try:
        Method.parse(method)
    except ValueError as err:
        fail(PROG, str(err))
    with job(PROG, args.out):
        summary = run(
            args.labelled,
            args.unlabelled,
            args.out,
            method,
            args.features,
            args.encoder,
            args.review,
            cache=cache_root(not args.no_cache),
        )
    print(
        f"cross-validated accuracy on the {summary['labelled_cells']} labelled cells "
        f"({summary['cv']}): {summary['cv_accuracy']:.1%} "
        f"(balanced {summary['cv_balanced_accuracy']:.1%})"
    )
    total = summary["classified_cells"]
    print(f"differential count of {total} cells ({summary['method']}; cells labelled, percent "
          "and its 95 % interval):")
    for name, n in summary["counts"].items():
        low, high = summary["percent_interval95"][name]
        print(f"  {name:<20} {n:>5}  {summary['percent'][name]:5.1f} %  ({low:.1f}-{high:.1f})")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable images (listed in skipped.csv):")
        for s in summary["skipped"]:
            print(f"  {s}")
    if summary["flagged"]:
        print(f"flagged {len(summary['flagged'])} doubtful images, classified all the same "
              "(listed with the reason in flagged.csv)")
    for key, path in summary["outputs"].items():
        print(f"{key}: {path}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
