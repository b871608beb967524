"""The paper's evaluation protocols on features files (no JAX needed).

  python -m cellssl_jax.evaluate fewshot --train F.npz --split 0.7 --out DIR
  python -m cellssl_jax.evaluate fewshot --train A.npz --test B.npz --n 5,50 --out DIR
  python -m cellssl_jax.evaluate transfer --source BM.npz --target BLOOD.npz \
      --map matek_bm->matek_blood --out DIR
  python -m cellssl_jax.evaluate knn --features_file F.npz --out DIR
  python -m cellssl_jax.evaluate lab --features_file F.npz --part validation --out DIR

Writes results.csv, summary.json, report.md, curve.png, confusion/*.png and evaluate.log under
--out (knn: knn.json and evaluate.log; lab: results.csv, summary.csv, summary.json, report.md,
lab.png and evaluate.log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from cellssl_jax.cli import add_out_flag
from cellssl_jax.fewshot.classes import DATASETS
from cellssl_jax.fewshot.classifiers import CLASSIFIERS, PRESET_RULE, PRESETS, RULES
from cellssl_jax.fewshot.differential import DEFAULT_METHOD, LEGACY_METHOD, Method
from cellssl_jax.fewshot.features import Features, load_features
from cellssl_jax.fewshot.knn import knn_accuracy
from cellssl_jax.fewshot.lab import (
    DEFAULT_MIXES,
    DEFAULT_SIZE,
    NATURAL,
    LabEvaluation,
    lab_parts,
    lab_protocol,
    mix_fractions,
    write_lab_report,
)
from cellssl_jax.fewshot.lab import DEFAULT_N as LAB_N
from cellssl_jax.fewshot.protocols import (
    DEFAULT_N,
    Evaluation,
    direct_transfer,
    fewshot_curve,
    require_labels,
)
from cellssl_jax.fewshot.report import write_report
from cellssl_jax.logs import job
from cellssl_jax.splits import SPLIT_SEED, file_id, stratified_split
from cellssl_jax.vocab import builder_labels

log = logging.getLogger("cellssl_jax.evaluate")

PROG = "python -m cellssl_jax.evaluate"

def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _dataset_map(text: str) -> tuple[str, str]:
    source, sep, target = text.partition("->")
    if not sep or source not in DATASETS or target not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"expected <source>-><target> with datasets from {', '.join(DATASETS)}, got {text!r}"
        )
    return source, target


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"split must be a fraction in (0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="protocol", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_out_flag(common)
    common.add_argument(
        "--classifiers",
        type=_name_list,
        default=list(CLASSIFIERS),
        help=f"comma-separated, from {','.join(CLASSIFIERS)} (default: all)",
    )
    common.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper-code",
        help="paper-code (default): PowerTransformer -> PCA -> classifier, as the published "
        "code; sklearn-default: scikit-learn's defaults on the raw features, as the paper's text",
    )
    common.add_argument("--repeats", type=int, default=100, help="repetitions (default 100)")
    common.add_argument("--seed", type=int, default=0, help="seeds every repetition")
    common.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)"
    )
    common.add_argument(
        "--allow_mixed_encoders",
        action="store_true",
        help="score features of two different encoders or read sizes against each other "
        "(refused by default; the report says so)",
    )
    common.add_argument(
        "--split",
        type=_fraction,
        default=None,
        help="train fraction of a stratified seeded split (paper: 0.7)",
    )

    few = sub.add_parser(
        "fewshot",
        parents=[common],
        help="domain-adaptation curve",
        description="Fit on n labelled train cells per class, score on the test cells. With "
        "--split, one file is split into train/test; otherwise --test is required.",
    )
    few.add_argument("--train", type=Path, required=True, help="features file (.npz)")
    few.add_argument("--test", type=Path, help="features file (.npz) scored")
    few.add_argument(
        "--n",
        type=_int_list,
        default=None,
        help=f"cells per class (default {','.join(map(str, DEFAULT_N))}; defaults larger than "
        "every class are allowed and use all cells, explicit ones are an error)",
    )
    few.add_argument(
        "--rule",
        choices=RULES,
        default=None,
        help="proba: argmax of predict_proba (libsvm's probabilities for the SVM, the paper's "
        "code); vote: predict (the SVM's one-vs-one votes); default: the preset's ("
        + ", ".join(f"{p}: {r}" for p, r in PRESET_RULE.items())
        + ")",
    )

    tr = sub.add_parser(
        "transfer",
        parents=[common],
        help="direct transfer with probability masking",
        description="Fit on n source cells per class, predict target cells restricted to the "
        "source classes that exist in the target. With --split, the source's train part "
        "and the target's test part are used.",
    )
    tr.add_argument("--source", type=Path, required=True, help="source features (.npz)")
    tr.add_argument("--target", type=Path, required=True, help="target features (.npz)")
    tr.add_argument(
        "--map",
        type=_dataset_map,
        required=True,
        help=f"<source>-><target> dataset names ({', '.join(DATASETS)})",
    )
    tr.add_argument(
        "--n",
        type=int,
        default=None,
        help="source cells per class (default 250, or all cells of a smaller source; an "
        "explicit n larger than every class is an error)",
    )
    knn = sub.add_parser(
        "knn",
        help="k-NN probe of one labelled features file",
        description="Cosine k-NN (distance-weighted), each cell predicted by stratified k-fold "
        "cross-validation; balanced accuracy. DINO's yardstick for a feature, no fitting: "
        "compare encoders (or checkpoints of one run) on the same cells.",
    )
    add_out_flag(knn)
    knn.add_argument("--features_file", type=Path, required=True, help="features file (.npz)")
    knn.add_argument("--k", type=int, default=20, help="neighbours (default 20, as DINO)")
    knn.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    knn.add_argument("--seed", type=int, default=0, help="seeds the folds")

    lab = sub.add_parser(
        "lab",
        help="what a lab reads: differential counts of folders with real class mixes",
        description="n labelled cells per class from the builders' fit part, a folder drawn "
        "with a class mix from --part (validation to choose, test to report once); every "
        "method on the same draws; balanced accuracy, macro-F1 and the count error (mean and "
        "max over classes of |predicted %% - true %%|, in points). Methods: "
        "cellssl_jax/fewshot/differential.py.",
    )
    add_out_flag(lab)
    lab.add_argument("--features_file", type=Path, required=True,
                     help="labelled features file (.npz) whose image files exist (parts are "
                     "cut by their sha256)")
    lab.add_argument("--part", choices=("validation", "test"), default="validation",
                     help="where the folders are drawn from (default validation)")
    lab.add_argument("--methods", type=_name_list,
                     default=[LEGACY_METHOD, DEFAULT_METHOD],
                     help=f"comma-separated method names (default {LEGACY_METHOD},"
                     f"{DEFAULT_METHOD}: today's rule and the default)")
    lab.add_argument("--n", type=_int_list, default=list(LAB_N),
                     help=f"labelled cells per class (default {','.join(map(str, LAB_N))})")
    lab.add_argument("--mixes", type=lambda t: [v.strip() for v in t.split(";") if v.strip()],
                     default=list(DEFAULT_MIXES),
                     help="';'-separated mixes: balanced, normal_blood, natural (the scored "
                     "part's own mix), dirichlet[:A], or name=percent,... (default "
                     + ";".join(DEFAULT_MIXES) + ")")
    lab.add_argument("--classes", type=_name_list, default=None,
                     help="comma-separated class names: label and count only these, as a "
                     "laboratory that labels a few types would (e.g. the white cells; mixes "
                     "are renormalised over them; default every class)")
    lab.add_argument("--size", type=int, default=DEFAULT_SIZE,
                     help=f"folder cells per draw (default {DEFAULT_SIZE}; fewer when the part "
                     "lacks cells for the mix)")
    lab.add_argument("--repeats", type=int, default=10, help="draws per (n, mix) (default 10)")
    lab.add_argument("--seed", type=int, default=0, help="seeds every draw")
    lab.add_argument("--intervals", action="store_true",
                     help="also compute each count's 95 %% interval and score its coverage")
    lab.add_argument("--jobs", type=int, default=1, help="parallel workers (default 1)")
    return parser


def describe_encoder(feats: Features) -> str:
    """The encoder (and read size) a features file was extracted with, for messages."""
    read = f", read at {feats.read_size}" if feats.read_size else ""
    return f"{feats.encoder} (sha256 {feats.encoder_sha256[:12] or 'n/a'}{read})"


def check_same_encoder(
    first: Features, second: Features, roles: tuple[str, str], allow_mixed: bool
) -> str:
    """Refuse two features files from different encoders or read sizes: scoring one against
    the other is meaningless unless meant. With `allow_mixed`, returns what differs (for the
    report); "" when nothing does."""
    differs = [
        what
        for what, a, b in [
            ("encoder", first.encoder_sha256, second.encoder_sha256),
            ("read size", first.read_size, second.read_size),
        ]
        if a != b and (what == "encoder" or (a and b))  # an unrecorded read size is not compared
    ]
    if not differs:
        return ""
    detail = (
        f"{roles[0]} features {first.source} come from {describe_encoder(first)}, "
        f"{roles[1]} features {second.source} from {describe_encoder(second)}"
    )
    if not allow_mixed:
        raise ValueError(
            f"different {' and '.join(differs)}: {detail}. Extract both with the same encoder "
            "and --image_size, or pass --allow_mixed_encoders for a deliberate cross-encoder "
            "experiment"
        )
    mixed = f"MIXED {' and '.join(differs)} (--allow_mixed_encoders): {detail}"
    log.warning("%s", mixed)
    return mixed


def _cell_ids(feats: Features) -> list[str]:
    """Each row's id as the builders make it: the sha256 of the image file's bytes."""
    missing = [p for p in feats.paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{feats.source}: --split identifies cells by the sha256 of their image files, but "
            f"{len(missing)} of {len(feats.paths)} are missing (e.g. {missing[0]}); run where the "
            "images are, or give a separate --test file"
        )
    return [file_id(p) for p in feats.paths]


def _part(feats: Features, fraction: float | None, which: int) -> Features:
    """The train (which=0) or test (which=1) part of the builders' id-seeded split.

    Seeded by the cells' file hashes, not by --seed, so at 0.7 the test part is the builders'
    test part: a cell the bundled encoder was pretrained on never lands in it.
    """
    if fraction is None:
        return feats
    require_labels(feats, "input")
    labelled = feats.subset(feats.labelled.nonzero()[0])
    labels = np.asarray(builder_labels(labelled.class_names))[labelled.labels]
    train = stratified_split(_cell_ids(labelled), labels, SPLIT_SEED, fraction)
    return labelled.subset(np.flatnonzero(train if which == 0 else ~train))


def run(args: argparse.Namespace) -> Evaluation:
    """Load the inputs named by `args` and run the chosen protocol."""
    common = dict(
        classifiers=args.classifiers,
        preset=args.preset,
        repeats=args.repeats,
        seed=args.seed,
        jobs=args.jobs,
    )
    if args.protocol == "fewshot":
        if (args.test is None) == (args.split is None):
            raise ValueError("give either --test B.npz or --split FRACTION (not both, not neither)")
        data = first = load_features(args.train)
        train = _part(data, args.split, 0)
        test = load_features(args.test) if args.test else _part(data, args.split, 1)
        mixed = check_same_encoder(train, test, ("train", "test"), args.allow_mixed_encoders)
        ev = fewshot_curve(
            train,
            test,
            n_values=args.n or DEFAULT_N,
            allow_saturated=args.n is None,
            rule=args.rule,
            **common,
        )
        ev.inputs = {"train": str(args.train), "test": str(args.test or args.train)}
        ev.dataset = args.train.stem + (f" -> {args.test.stem}" if args.test else "")
        if args.split:
            ev.inputs["split"] = f"{args.split} train / {1 - args.split:.2g} test, stratified"
    else:
        first = load_features(args.source)
        source = _part(first, args.split, 0)
        target = _part(load_features(args.target), args.split, 1)
        mixed = check_same_encoder(source, target, ("source", "target"), args.allow_mixed_encoders)
        ev = direct_transfer(
            source,
            target,
            *args.map,
            n_per_class=250 if args.n is None else args.n,
            allow_saturated=args.n is None,
            **common,
        )
        ev.inputs = {"source": str(args.source), "target": str(args.target)}
        ev.inputs["map"] = "->".join(args.map)
    ev.inputs["encoder"] = mixed or describe_encoder(first)
    return ev


def knn_probe(args: argparse.Namespace) -> Path:
    """`evaluate knn`: the k-NN balanced accuracy of one file -> knn.json."""
    feats = load_features(args.features_file)
    require_labels(feats, "--features_file")
    labelled = feats.subset(feats.labelled.nonzero()[0])
    accuracy = knn_accuracy(labelled.features, labelled.labels, args.k, args.folds, args.seed)
    log.info("k-NN (k=%d, %d-fold) balanced accuracy %.1f %% on %d cells of %d classes, %s",
             args.k, args.folds, 100 * accuracy, len(labelled.labels),
             len(np.unique(labelled.labels)), describe_encoder(feats))
    out = args.out / "knn.json"
    out.write_text(json.dumps({"features_file": str(args.features_file), "k": args.k,
                               "folds": args.folds, "seed": args.seed,
                               "cells": len(labelled.labels), "balanced_accuracy": accuracy,
                               "encoder": describe_encoder(feats)}, indent=1))
    return out


def lab_run(args: argparse.Namespace) -> LabEvaluation:
    """`evaluate lab`: the fit part labels, --part gives the folders."""
    for name in args.methods:
        Method.parse(name)
    feats = load_features(args.features_file)
    require_labels(feats, "--features_file")
    classes = args.classes or feats.class_names
    feats.check_class_names(classes)  # a clear error for an unknown name, before any work
    for mix in args.mixes:  # the natural mix is checked once the scored part is known
        if mix != NATURAL:
            mix_fractions(mix, classes, np.random.default_rng(0))
    labelled = feats.subset(feats.labelled.nonzero()[0])
    _cell_ids(labelled)  # a clear error when the image files are not here
    fit, scored = lab_parts(labelled, args.part, args.classes)
    ev = lab_protocol(fit, scored, args.methods, args.n, args.mixes, args.repeats, args.seed,
                      args.size, args.intervals, args.jobs)
    ev.inputs = {"features_file": str(args.features_file), "part": args.part,
                 "classes": ",".join(classes), "encoder": describe_encoder(feats),
                 "labelled_from": f"fit part ({len(fit.labels)} cells)",
                 "folders_from": f"{args.part} part ({len(scored.labels)} cells)"}
    return ev


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with job(PROG, args.out):
        if args.protocol == "knn":
            log.info("wrote %s", knn_probe(args))
            return
        if args.protocol == "lab":
            start = time.perf_counter()
            ev = lab_run(args)
            log.info("lab protocol done in %.1f s", time.perf_counter() - start)
            for path in write_lab_report(ev, args.out):
                log.info("wrote %s", path)
            return
        start = time.perf_counter()
        ev = run(args)
        log.info("%s protocol done in %.1f s", ev.protocol, time.perf_counter() - start)
        for path in write_report(ev, args.out):
            log.info("wrote %s", path)


if __name__ == "__main__":
    main()
