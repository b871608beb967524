"""The end-to-end demo on the bundled sample of real blood cells (what `make demo` runs).

    python -m cellssl_jax.demo --out demo_out [--encoder ENCODER]

On `cellssl_jax/assets/sample` (96 labelled PBC cells, 12 per class, and 100 unlabelled ones
whose true classes are kept aside in unlabelled_truth.csv), side by side for the encoder's
features, the colour-histogram baseline and the default features (the encoder's beside colour
histograms and cell shape):
1. extract features (bundled encoder unless --encoder);
2. few-shot evaluation: SVM/LR/KNN fitted on n = 2, 5, 10 labelled cells per class, scored on
   the 100 held-out cells (their true classes), 5 repetitions;
3. classify the unlabelled cells with all 12 labelled cells per class (`classify`'s default
   method): predictions, differential count and review list, scored against the true classes;
4. an attention map of a few cells (encoder only) and a 2-D embedding of all 196 cells.
Writes summary.md, summary.json, the figures, one folder per step and kind, and demo.log.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from cellssl_jax import figures
from cellssl_jax.cache import cache_root
from cellssl_jax.cli import add_cache_flag, add_encoder_flag, add_out_flag
from cellssl_jax.featurize import DEFAULT_KIND, Featurizer, make_featurizer
from cellssl_jax.fewshot.differential import DEFAULT_METHOD
from cellssl_jax.fewshot.features import Features, save_features
from cellssl_jax.fewshot.protocols import fewshot_curve
from cellssl_jax.fewshot.report import summarise, write_report
from cellssl_jax.labelling import classify_folders
from cellssl_jax.logs import job

log = logging.getLogger("cellssl_jax.demo")

PROG = "python -m cellssl_jax.demo"
SAMPLE = Path(__file__).parent / "assets" / "sample"
FEWSHOT_N = (2, 5, 10)  # n = 1 overflows the power transform of colour histograms
REPEATS = 5
ATTENTION_CELLS = ("eosinophil", "lymphocyte", "neutrophil")


def read_truth(sample: Path, class_names: list[str]) -> dict[str, int]:
    """unlabelled file name -> class index, from the sample's unlabelled_truth.csv."""
    with open(sample / "unlabelled_truth.csv", newline="") as fh:
        return {row["file"]: class_names.index(row["class"]) for row in csv.DictReader(fh)}


def with_truth(feats: Features, truth: dict[str, int], class_names: list[str]) -> Features:
    """The unlabelled features with their true labels (for scoring only)."""
    labels = np.array([truth[Path(p).name] for p in feats.paths], dtype=np.int64)
    return dataclasses.replace(feats, labels=labels, class_names=class_names)


def run_kind(kind: str, featurizer: Featurizer, out: Path, sample: Path) -> dict:
    """Classify, few-shot evaluation and embedding for one kind of features."""
    classified = out / f"classify_{kind}"
    summary, result = classify_folders(
        sample / "labelled", sample / "unlabelled", classified, featurizer
    )
    labelled, names = result.labelled, result.class_names
    scored = with_truth(result.unlabelled, read_truth(sample, names), names)
    y_true, y_pred = scored.labels, result.predicted  # both in the unlabelled features' order

    # votes, not the paper code's argmax of libsvm probabilities: at 2-10 cells per class
    # those can come out inverted (docs/EVALUATION.md, "Prediction rule")
    ev = fewshot_curve(labelled, scored, FEWSHOT_N, repeats=REPEATS, seed=0, rule="vote")
    ev.dataset = "bundled PBC sample"
    ev.inputs = {
        "train": "bundled sample, labelled/",
        "test": "bundled sample, unlabelled/ + unlabelled_truth.csv",
        "features": summary["features"],
    }
    fewshot_dir = out / f"fewshot_{kind}"
    write_report(ev, fewshot_dir)
    fewshot = {(r["classifier"], r["n_per_class"]): r for r in summarise(ev)}

    both = Features(
        np.concatenate([labelled.features, scored.features]),
        np.concatenate([labelled.labels, scored.labels]),
        names,
        [*labelled.paths, *scored.paths],
        labelled.encoder,
        labelled.encoder_sha256,
        source=str(out / f"embedding_{kind}.npz"),
    )
    save_features(both.source, both.features, both.labels, both.class_names, both.paths,
                  both.encoder, both.encoder_sha256)
    embedding = figures.embedding_png(both, out / f"embedding_{kind}.png")
    return {
        "features": summary["features"],
        "cv": f"{summary['cv_accuracy']:.1%} ({summary['cv']})",
        "fewshot": {
            f"{name} n={n}": fewshot[(name, n)]["balanced_accuracy_mean"]
            for name in ("svm", "lr", "knn")
            for n in FEWSHOT_N
        },
        "unlabelled_accuracy": float((y_true == y_pred).mean()),
        "unlabelled_balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "true_counts": np.bincount(y_true, minlength=len(names)).tolist(),
        "predicted_counts": [summary["counts"][c] for c in names],
        "class_names": names,
        "outputs": {
            "classify": str(classified),
            "fewshot report": str(fewshot_dir / "report.md"),
            "embedding": str(embedding),
        },
    }


def report_md(results: dict[str, dict], attention: list[Path], seconds: float) -> str:
    """A short markdown summary comparing the encoder with the colour histograms."""
    kinds = list(results)
    head = "| | " + " | ".join(results[k]["features"] for k in kinds) + " |"
    lines = [
        "# cellssl-jax demo on the bundled sample (96 labelled + 100 unlabelled PBC cells)",
        "",
        head,
        "|---" * (len(kinds) + 1) + "|",
        f"| CV accuracy, labelled cells ({DEFAULT_METHOD}) | "
        + " | ".join(results[k]["cv"] for k in kinds)
        + " |",
        f"| unlabelled cells: accuracy ({DEFAULT_METHOD}, 12/class) | "
        + " | ".join(f"{results[k]['unlabelled_accuracy']:.1%}" for k in kinds)
        + " |",
        "| unlabelled cells: balanced accuracy | "
        + " | ".join(f"{results[k]['unlabelled_balanced_accuracy']:.1%}" for k in kinds)
        + " |",
    ]
    for key in results[kinds[0]]["fewshot"]:
        lines.append(
            f"| few-shot balanced accuracy, {key}/class ({REPEATS} draws) | "
            + " | ".join(f"{results[k]['fewshot'][key]:.1%}" for k in kinds)
            + " |"
        )
    names = results[kinds[0]]["class_names"]
    lines += [
        "",
        f"Differential count of the unlabelled cells ({DEFAULT_METHOD}; cells labelled):",
        "",
        "| class | true | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    for i, c in enumerate(names):
        lines.append(
            f"| {c} | {results[kinds[0]]['true_counts'][i]} | "
            + " | ".join(str(results[k]["predicted_counts"][i]) for k in kinds)
            + " |"
        )
    lines += [
        "",
        "Attention maps: " + ", ".join(p.name for p in attention),
        "",
        f"Wall time: {seconds:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def run(
    out: str | Path, encoder: str | Path | None = None, cache: Path | None = None
) -> dict:
    """The whole demo; returns {name: path} of what it wrote. `cache`: the features cache
    folder (None: none), through which the default kind reuses the "xcit" rows."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    xcit = make_featurizer("xcit", encoder, cache=cache)
    default = make_featurizer(DEFAULT_KIND, xcit.encoder, cache=cache)
    results = {
        "xcit": run_kind("xcit", xcit, out, SAMPLE),
        "colorhist": run_kind("colorhist", make_featurizer("colorhist"), out, SAMPLE),
        DEFAULT_KIND: run_kind(DEFAULT_KIND, default, out, SAMPLE),
    }
    attention = []
    for cls in ATTENTION_CELLS:
        image = sorted((SAMPLE / "labelled" / cls).iterdir())[0]
        attention.append(
            figures.attention_png(image, out / f"attention_{cls}.png", xcit.encoder)
        )
    seconds = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    (out / "summary.md").write_text(report_md(results, attention, seconds))
    outputs = {"summary": out / "summary.md"}
    for kind, res in results.items():
        outputs.update({f"{k} ({kind})": Path(v) for k, v in res["outputs"].items()})
    outputs.update({f"attention ({p.stem.split('_', 1)[1]})": p for p in attention})
    return outputs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_out_flag(parser, default=Path("demo_out"))
    add_encoder_flag(parser)
    add_cache_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    with job(PROG, args.out):
        outputs = run(args.out, args.encoder, cache_root(not args.no_cache))
    print((args.out / "summary.md").read_text())
    for name, path in outputs.items():
        print(f"{name:<28} {path}")
    return outputs


if __name__ == "__main__":
    main(sys.argv[1:])
