"""Choose the bundled encoder, its read size and the default features of `classify` / `select`
on a validation split, then report the choice once on the test part (and across laboratories).

PBC dev cells (../shared/data/acevedo_pbc_dev) are split by the builders' id-seeded rule
(`three_way_split`: sha256 ids; the builders' 70/30 train/test, then the train part 70/30 into
fit/validation), so the test part is the builders' test split, which no encoder trained by
scripts/release/pretrain_bundled.py saw. Candidates: colour histograms, each --encoder at each
--sizes read, and each beside the colour histograms. For each candidate and classifier, `classify`'s
own fit (paper-code pipeline, calibrated probabilities, most probable class) on 50 fit
cells/class per draw predicts the validation cells; balanced accuracy over --repeats draws.
With --test, each classifier's chosen candidate and the colour baseline are then fitted on 50
train cells/class (fit + validation) and scored on the test part, once; and fitted on the BM dev
cells and scored on the PBC test part (`evaluate transfer`, 250 cells/class, masking as the
paper).

Read size "file" reads the cells as the encoder file asks (its input_size and crop rule, e.g. a
copy of the bundled encoder with another crop rule: `encoder.rewrite_meta`). `--dataset bm`
chooses on the validation part of the BM dev cells instead (another scanner; no --test there).

    python scripts/release/select_default.py --out runs/select_default \\
        [--encoder shipped=cellssl_jax/assets/encoder_default.msgpack --encoder cpu=F.msgpack] \\
        [--sizes 224,352,file] [--dataset pbc|bm] [--test]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from cellssl_jax.data import shared_data_dir
from cellssl_jax.encoder import DEFAULT_ENCODER
from cellssl_jax.fewshot.differential import posteriors
from cellssl_jax.fewshot.features import Features, load_features, save_features
from cellssl_jax.fewshot.sampling import builder_parts, sample_per_class

SHARED = shared_data_dir()
CLASSIFIERS = ("svm", "lr")
N_PER_CLASS = 50
COLOUR = "colorhist"
FILE = "file"  # read size: as the encoder file asks (input_size, crop rule)


def extract(out: Path, dataset: str, name: str, encoder: Path | None, size: str | None) -> Path:
    """Features of every cell of `dataset`, made once with the project's extract command."""
    path = out / f"{dataset}_{name}{'_' + size if size else ''}" / "features.npz"
    folder = {"pbc": "acevedo_pbc_dev", "bm": "matek_bm_dev"}[dataset]
    if not path.exists():
        cmd = [sys.executable, "-m", "cellssl_jax.extract", "--images", str(SHARED / folder),
               "--out", str(path.parent)]
        if encoder is None:
            cmd += ["--features", COLOUR]
        else:
            cmd += ["--features", "xcit", "--encoder", str(encoder)]
            cmd += ["--image_size", size] if size != FILE else []
        subprocess.run(cmd, check=True)
    return path


def side_by_side(a: Features, b: Features) -> Features:
    assert a.paths == b.paths
    return Features(np.concatenate([a.features, b.features], axis=1), a.labels, a.class_names,
                    a.paths, a.encoder, a.encoder_sha256, read_size=a.read_size)


def score(feats: Features, parts: np.ndarray, fit: set[str], on: str, classifier: str,
          repeats: int) -> list[float]:
    """Balanced accuracy on part `on` of `classify`'s fit on 50 cells/class of parts `fit`
    (its posteriors, `fewshot.differential.posteriors`, as `labelling.classify_features`
    computes them, without the cross-validation and the count's interval it adds)."""
    pool = np.flatnonzero(np.isin(parts, sorted(fit)))
    target = feats.subset(np.flatnonzero(parts == on))
    out = []
    for r in range(repeats):
        pick = pool[sample_per_class(feats.labels[pool], N_PER_CLASS, np.random.default_rng(r))]
        proba, _ = posteriors(classifier, feats.features[pick], feats.labels[pick],
                              target.features, len(feats.class_names))
        out.append(float(balanced_accuracy_score(target.labels, proba.argmax(axis=1))))
    return out


def save(feats: Features, path: Path) -> Path:
    save_features(path, feats.features, feats.labels, feats.class_names, feats.paths,
                  feats.encoder, feats.encoder_sha256, read_size=feats.read_size)
    return path


def transfer(out: Path, name: str, bm: Features, pbc_test: Features, repeats: int) -> dict:
    """`evaluate transfer` BM -> PBC test part (paper code, 250 BM cells/class, masking)."""
    folder = out / f"transfer_{name}"
    if not (folder / "summary.json").exists():
        subprocess.run([
            sys.executable, "-m", "cellssl_jax.evaluate", "transfer",
            "--source", str(save(bm, out / f"bm_{name}_all.npz")),
            "--target", str(save(pbc_test, out / f"pbc_test_{name}.npz")),
            "--map", "matek_bm->acevedo", "--classifiers", ",".join(CLASSIFIERS),
            "--preset", "paper-code", "--repeats", str(repeats), "--out", str(folder)],
            check=True)
    rows = json.loads((folder / "summary.json").read_text())
    return {r["classifier"]: [r["balanced_accuracy_mean"], r["balanced_accuracy_std"]]
            for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", action="append", metavar="NAME=FILE",
                        help="an encoder to compare (repeatable; default: shipped=the bundled "
                        "encoder)")
    parser.add_argument("--sizes", default="224,352", help="encoder read sizes to compare")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dataset", choices=("pbc", "bm"), default="pbc",
                        help="whose validation part to choose on (default pbc)")
    parser.add_argument("--test", action="store_true", help="report the choice on the test part")
    args = parser.parse_args()
    if args.test and args.dataset != "pbc":
        parser.error("--test reports on the PBC test part: use it with --dataset pbc")
    args.out.mkdir(parents=True, exist_ok=True)
    encoders = dict(e.split("=", 1) for e in args.encoder or [f"shipped={DEFAULT_ENCODER}"])

    def features(dataset: str, key: str) -> Features:
        if key == COLOUR:
            return load_features(extract(args.out, dataset, COLOUR, None, None))
        name, size = key.split("@")
        return load_features(extract(args.out, dataset, name, Path(encoders[name]), size))

    pbc = {COLOUR: features(args.dataset, COLOUR)}
    pbc.update({f"{name}@{size}": features(args.dataset, f"{name}@{size}")
                for name in encoders for size in args.sizes.split(",")})
    colour = pbc[COLOUR]
    candidates = {COLOUR: colour}
    for key, feats in pbc.items():
        if key != COLOUR:
            candidates[key] = feats
            candidates[key.replace("@", "+colorhist@")] = side_by_side(feats, colour)
    parts = builder_parts(colour.paths, colour.labels, colour.class_names)
    counts = {p: int((parts == p).sum()) for p in ("fit", "validation", "test")}

    table = {name: {c: score(f, parts, {"fit"}, "validation", c, args.repeats)
                    for c in CLASSIFIERS} for name, f in candidates.items()}
    best = {c: max(table, key=lambda n, c=c: np.mean(table[n][c])) for c in CLASSIFIERS}
    summary = {"dataset": args.dataset, "cells": counts, "n_per_class": N_PER_CLASS,
               "repeats": args.repeats, "encoders": encoders,
               "validation": {n: {c: [float(np.mean(v)), float(np.std(v))]
                                  for c, v in row.items()} for n, row in table.items()},
               "chosen_on_validation": best}
    lines = [f"{args.dataset.upper()} dev, {counts}; {N_PER_CLASS} cells/class, "
             f"{args.repeats} draws, classify's fit; balanced accuracy on the **validation** "
             "part (mean +- std)", "",
             "| features | " + " | ".join(CLASSIFIERS) + " |", "|---|" + "---|" * len(CLASSIFIERS)]
    for name, row in summary["validation"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * m:.1f} +- {100 * s:.1f} %" for m, s in row.values()) + " |")
    lines += ["", "chosen on validation: " + ", ".join(f"{c}: {n}" for c, n in best.items())]
    if args.test:
        test, moved = {}, {}
        bm_colour = features("bm", COLOUR)
        for c, name in best.items():
            for n in dict.fromkeys([name, COLOUR]):
                v = score(candidates[n], parts, {"fit", "validation"}, "test", c, args.repeats)
                test.setdefault(c, {})[n] = [float(np.mean(v)), float(np.std(v))]
                if n not in moved:
                    base = n.replace("+colorhist", "")
                    bm = bm_colour if n == COLOUR else features("bm", base)
                    if "+colorhist" in n:
                        bm = side_by_side(bm, bm_colour)
                    moved[n] = transfer(args.out, n, bm,
                                        candidates[n].subset(np.flatnonzero(parts == "test")),
                                        args.repeats)
        summary["test"], summary["transfer_bm_to_pbc_test"] = test, moved
        lines += ["", "**test** part, fitted on fit + validation (reported once):", ""]
        for c, row in test.items():
            lines += [f"- {c}: " + ", ".join(f"{n} {100 * m:.1f} +- {100 * s:.1f} %"
                                             for n, (m, s) in row.items())]
        lines += ["", "BM dev -> PBC **test** part, `evaluate transfer` (250 BM cells/class):", ""]
        for n, row in moved.items():
            lines += [f"- {n}: " + ", ".join(f"{c} {100 * m:.1f} +- {100 * s:.1f} %"
                                             for c, (m, s) in row.items())]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
