"""Choose `classify`'s default method with the lab protocol on validation; report it on test once.

Runs `cellssl_jax.fewshot.lab.lab_protocol` (what `python -m cellssl_jax.evaluate lab` runs) on
the PBC and BM dev cells' features (made once by
`python -m cellssl_jax.extract --images ../shared/data/<folder> --features xcit+colorhist`),
both as extracted (encoder + colour) and cut to the colour-histogram columns (the baseline,
the same numbers `--features colorhist` gives: the last 96 columns). Labelled cells come from
the builders' fit part, the folders from --part (validation to choose, test to report once).
Every method of a dataset sees the same draws. Writes <out>/<dataset>_<features>/ (the
protocol's report) and <out>/table.md (every row, side by side). `--white_cells`: label and
count only the five (PBC) or four (BM) mature white-cell types, as the other laboratories'
check does (4-5 white-cell classes at their natural mix); cells keep their parts.

    python scripts/release/lab_default.py --out runs/lab_val --part validation \\
        --methods svm,lr,lr+em,lr+spread [--colour_methods svm,lr] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cellssl_jax.featurize.featurizers import MEASURED as MEASURED_KINDS
from cellssl_jax.fewshot.features import Features, load_features
from cellssl_jax.fewshot.lab import (
    DEFAULT_MIXES,
    DEFAULT_N,
    lab_parts,
    lab_protocol,
    write_lab_report,
)

# the parts with no encoder, by the name a features file records: (kind, dimension)
MEASURED = {c.name: (kind, c.dim) for kind, c in MEASURED_KINDS.items()}


def columns(feats: Features, kind: str) -> Features | None:
    """The columns of `kind`'s parts (e.g. "colorhist") of a features file whose `encoder`
    names its parts ("encoder_default+colorhist_3x32+cellshape_127"); None if it lacks one."""
    names = feats.encoder.split("+")
    dims = [MEASURED.get(n, ("xcit", 0))[1] for n in names]
    dims = [d or feats.features.shape[1] - sum(dims) for d in dims]  # the encoder: the rest
    starts = np.cumsum([0, *dims])[:-1]
    found = {MEASURED.get(n, ("xcit",))[0]: (n, slice(a, a + d))
             for n, a, d in zip(names, starts, dims, strict=True)}
    if not all(p in found for p in kind.split("+")):
        return None
    picked = [found[p] for p in kind.split("+")]
    return Features(np.concatenate([feats.features[:, s] for _, s in picked], axis=1),
                    feats.labels, feats.class_names, feats.paths,
                    "+".join(n for n, _ in picked), "", feats.skipped, feats.source, "")


# the mature white-cell types of each dev set (BM's others: blasts, promyelocytes, NIF)
WHITE_CELLS = {"pbc": ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"],
               "bm": ["EOS", "LYT", "MON", "NGS"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pbc", type=Path, default=Path("runs/feat_pbc/features.npz"))
    parser.add_argument("--bm", type=Path, default=Path("runs/feat_bm/features.npz"))
    parser.add_argument("--part", choices=("validation", "test"), default="validation")
    parser.add_argument("--methods", default="svm,lr", help="comma-separated, on every column")
    parser.add_argument("--before_methods", default="",
                        help="comma-separated, on the encoder + colour columns alone")
    parser.add_argument("--colour_methods", default="svm,lr",
                        help="comma-separated, on the colour columns alone ('' for none)")
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_N)))
    parser.add_argument("--mixes", default=";".join(DEFAULT_MIXES))
    parser.add_argument("--datasets", default="pbc,bm")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--intervals", action="store_true")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--white_cells", action="store_true",
                        help="only the mature white-cell classes (WHITE_CELLS)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    n_values = [int(v) for v in args.n.split(",")]
    mixes = [m for m in args.mixes.split(";") if m]
    files = {"pbc": args.pbc, "bm": args.bm}
    table = ["| dataset | features | method | n | mix | balanced accuracy (%) | macro-F1 (%) | "
             "count error mean (pp) | count error max (pp) | coverage |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in args.datasets.split(","):
        full = load_features(files[dataset])
        kind = "+".join(MEASURED.get(n, ("xcit",))[0] for n in full.encoder.split("+"))
        runs = {kind: (full, args.methods)}
        for fewer, methods in (("xcit+colorhist", args.before_methods),
                               ("colorhist", args.colour_methods)):
            runs.setdefault(fewer, (columns(full, fewer), methods))
        for kind, (feats, methods) in runs.items():
            methods = [m for m in methods.split(",") if m]
            if not methods or feats is None:
                continue
            fit, scored = lab_parts(feats, args.part,
                                    WHITE_CELLS[dataset] if args.white_cells else None)
            start = time.perf_counter()
            ev = lab_protocol(fit, scored, methods, n_values, mixes, args.repeats, 0,
                              args.size, args.intervals, args.jobs)
            ev.inputs = {"features_file": str(files[dataset]), "features": kind,
                         "part": args.part, "classes": ",".join(fit.class_names),
                         "fit_cells": str(len(fit.labels)),
                         "scored_cells": str(len(scored.labels)),
                         "seconds": f"{time.perf_counter() - start:.0f}"}
            write_lab_report(ev, args.out / f"{dataset}_{kind}")
            for r in ev.summary():
                cover = f"{100 * r['coverage']:.0f} %" if "coverage" in r else "-"
                table.append(
                    f"| {dataset} | {kind} | {r['method']} | {r['n']} | {r['mix']} | "
                    f"{100 * r['balanced_accuracy']:.1f} +- {100 * r['balanced_accuracy_std']:.1f}"
                    f" | {100 * r['macro_f1']:.1f} | {r['count_error_mean']:.2f} +- "
                    f"{r['count_error_mean_std']:.2f} | {r['count_error_max']:.1f} | {cover} |")
            print("\n".join(table[-len(ev.summary()):]), flush=True)
    (args.out / "table.md").write_text("\n".join(table) + "\n")
    (args.out / "args.json").write_text(json.dumps(vars(args), default=str, indent=1))


if __name__ == "__main__":
    main()
