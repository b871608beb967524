"""Which cells to label next: typical and diverse cells first, then the classifier's doubts.

    python -m cellssl_jax.select --images DIR --budget 40 --out DIR
    python -m cellssl_jax.select --images DIR --per_class_budget 5 --expected_classes 8 --out DIR
    python -m cellssl_jax.select --images DIR --labelled LABELLED_DIR --budget 16 --out DIR
    python -m cellssl_jax.select --images DIR --labels labels.csv --budget 16 --out DIR

Without labels: k-means (default), k = budget clusters, the cell nearest each centre is
proposed, so common cell types are covered in proportion and every distinct group gets a cell;
cells that stand for the most cells come first. k-center: greedy farthest-point coverage
(reaches rare outliers, but proposes more odd cells).
With the labels made so far (--labelled: a folder of class sub-folders, as classify takes;
--labels: a CSV with columns file,class naming cells of --images), those cells are not proposed
again, and the next batch is: typical cells of the groups no label covers yet ("seed") until
--typical_cells cells are labelled; after that a quarter of each batch stays "seed" and the rest
are the cells the classifier (paper-code logistic regression) is least sure of, weighted toward
the classes with fewer labels ("uncertain", "short class"), spread over the feature space
(cellssl_jax/fewshot/acquire.py). A cell of --labelled that is also in --images (same bytes) counts
as labelled.
Writes selection.csv (rank order, reason, the classifier's two most probable classes and their
margin), contact_sheet.png, features.npz and select.log under --out.
Features: by default the encoder's beside colour histograms, as in `classify`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cellssl_jax.cache import cache_root
from cellssl_jax.cli import (
    add_alias,
    add_cache_flag,
    add_encoder_flag,
    add_features_flag,
    add_out_flag,
)
from cellssl_jax.data.images import UnreadableImage, read_rgb, relative_name
from cellssl_jax.data.reading import FolderSource
from cellssl_jax.featurize import DEFAULT_KIND, featurize_folder, make_featurizer
from cellssl_jax.fewshot.acquire import TYPICAL_CELLS, Proposal, next_batch
from cellssl_jax.fewshot.features import Features
from cellssl_jax.labelling import labelled_folder
from cellssl_jax.logs import job
from cellssl_jax.proposals import METHODS, propose
from cellssl_jax.splits import file_id

log = logging.getLogger("cellssl_jax.select")

PROG = "python -m cellssl_jax.select"
CSV_HEADER = ["rank", "file", "reason", "represents_cells", "predicted", "runner_up", "margin"]


def contact_sheet(paths: list[str], out: Path, thumb: int = 96, columns: int = 10) -> Path:
    """A grid of thumbnails numbered in labelling order (unreadable files show as grey)."""
    rows = -(-len(paths) // columns)
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, path in enumerate(paths):
        try:
            cell = Image.fromarray(read_rgb(path)).resize((thumb, thumb), Image.BILINEAR)
        except UnreadableImage:
            cell = Image.new("RGB", (thumb, thumb), "grey")
        x, y = (k % columns) * thumb, (k // columns) * (thumb + 14)
        sheet.paste(cell, (x, y + 14))
        draw.text((x + 2, y + 1), f"{k + 1}. {Path(path).name}"[: thumb // 6], fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def read_labels_csv(path: Path) -> list[tuple[str, str]]:
    """The (file, class) rows of a labels CSV with a header naming columns `file` and `class`."""
    if not path.is_file():
        raise FileNotFoundError(f"--labels file {path} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"file", "class"} <= set(reader.fieldnames or []):
            raise ValueError(
                f"--labels {path}: needs a header with columns file,class, got {reader.fieldnames}"
            )
        rows = [(r["file"].strip(), r["class"].strip()) for r in reader]
    empty = [f for f, c in rows if not f or not c]
    if empty:
        raise ValueError(f"--labels {path}: a row without file or class ({len(empty)} rows)")
    return rows


def gather_labels(
    feats: Features,
    images: Path,
    rows: list[tuple[str, str]],
    folder: Features | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Everything the rule needs from the labels made so far -> (features: the cells of
    `images`, then the cells of the labelled folder that are not in `images`; labelled rows;
    their classes; class names, sorted). A labels-CSV row names a cell of `images` (relative
    to it, or a path); a labelled-folder cell with the same bytes as a cell of `images` labels
    that cell."""
    where = {relative_name(p, images): i for i, p in enumerate(feats.paths)}
    where.update({str(Path(p).resolve()): i for i, p in enumerate(feats.paths)})
    label_of: dict[int, str] = {}
    for name, cls in rows:
        i = where.get(name, where.get(str((images / name).resolve()), where.get(
            str(Path(name).resolve()))))
        if i is None:
            raise ValueError(f"--labels: {name} is not a cell of --images {images}")
        if label_of.setdefault(i, cls) != cls:
            raise ValueError(f"--labels: {name} is labelled both {label_of[i]} and {cls}")
    x = [feats.features]
    extra: list[str] = []
    if folder is not None:
        ids = {file_id(p): i for i, p in enumerate(feats.paths)}
        keep = []
        for j, (p, y) in enumerate(zip(folder.paths, folder.labels, strict=True)):
            cls, i = folder.class_names[y], ids.get(file_id(p))
            if i is None:
                keep.append(j)
                extra.append(cls)
            elif label_of.setdefault(i, cls) != cls:
                raise ValueError(
                    f"{relative_name(feats.paths[i], images)} is labelled {label_of[i]}, and "
                    f"{cls} in --labelled"
                )
        x.append(folder.features[keep])
    names = sorted({*label_of.values(), *extra})
    number = {c: k for k, c in enumerate(names)}
    index = [*label_of, *range(len(feats.paths), len(feats.paths) + len(extra))]
    classes = [number[c] for c in [*label_of.values(), *extra]]
    return np.concatenate(x), np.asarray(index, np.int64), np.asarray(classes, np.int64), names


def run(
    images: str | Path,
    out: str | Path,
    budget: int,
    method: str = "kmeans",
    features: str = DEFAULT_KIND,
    encoder: str | Path | None = None,
    seed: int = 0,
    cache: Path | None = None,
    labelled: str | Path | None = None,
    labels: str | Path | None = None,
    typical_cells: int = TYPICAL_CELLS,
) -> dict[str, Path]:
    """Extract features of `images` (`cache`: the features cache folder, None: none), propose
    `budget` cells (the next batch, given the labels made so far: `labelled` folder and/or
    `labels` CSV), write the CSV and contact sheet."""
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise FileNotFoundError(f"--images folder {images} does not exist")
    # fail before the (slow) extraction
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    has_labels = labelled is not None or labels is not None
    if has_labels and method != "kmeans":
        raise ValueError(f"--method {method} is for the first batch; with labels the rule is fixed")
    if typical_cells < 0:
        raise ValueError(f"--typical_cells must be >= 0, got {typical_cells}")
    rows = read_labels_csv(Path(labels)) if labels is not None else []
    folder_source = labelled_folder(labelled) if labelled is not None else None
    source = FolderSource(images)
    if budget > len(source):
        raise ValueError(
            f"budget must be between 1 and the {len(source)} cells in {images}, got {budget}"
        )
    out.mkdir(parents=True, exist_ok=True)
    featurizer = make_featurizer(features, encoder, cache=cache)
    feats, _ = featurize_folder(images, featurizer, out / "features.npz", source=source)
    names: list[str] = []
    if not has_labels:
        proposal = Proposal.seeds(*propose(feats.features, budget, method, seed))
    else:
        folder = None
        if folder_source is not None:
            folder, _ = featurize_folder(
                labelled, featurizer, out / "labelled_features.npz", source=folder_source
            )
        x, index, classes, names = gather_labels(feats, images, rows, folder)
        counts = np.bincount(classes, minlength=len(names))
        log.info("labelled so far: %d cells, %s", len(index),
                 ", ".join(f"{c} {n}" for c, n in zip(names, counts, strict=True)) or "none")
        proposal = next_batch(x, index, classes, budget, typical_cells=typical_cells, seed=seed)
    write_selection(out / "selection.csv", proposal, feats.paths, images, names)
    sheet = contact_sheet([feats.paths[i] for i in proposal.index], out / "contact_sheet.png")
    reasons = {r: proposal.reason.count(r) for r in dict.fromkeys(proposal.reason)}
    log.info("proposed %d cells: %s", budget, ", ".join(f"{n} {r}" for r, n in reasons.items()))
    return {
        "selection": out / "selection.csv",
        "contact_sheet": sheet,
        "features": out / "features.npz",
    }


def write_selection(
    path: Path, proposal: Proposal, paths: list[str], images: Path, names: list[str]
) -> None:
    """selection.csv: one row per proposed cell, in labelling order."""

    def name(k: int) -> str:
        return names[k] if k >= 0 else ""

    rows = [
        [rank, relative_name(paths[i], images), reason, int(n), name(a), name(b),
         "" if np.isnan(m) else f"{m:.4f}"]
        for rank, (i, reason, n, a, b, m) in enumerate(
            zip(proposal.index, proposal.reason, proposal.represents, proposal.predicted,
                proposal.runner_up, proposal.margin, strict=True), 1)
    ]  # fmt: skip
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([CSV_HEADER, *rows])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", required=True, help="folder of unlabelled cells")
    add_out_flag(parser)
    parser.add_argument("--budget", type=int, help="total number of cells to propose")
    parser.add_argument(
        "--per_class_budget", type=int, help="cells per expected class (with --expected_classes)"
    )
    parser.add_argument("--expected_classes", type=int, help="how many cell types you expect")
    add_alias(parser, "--per-class-budget", "--per_class_budget", type=int)
    add_alias(parser, "--expected-classes", "--expected_classes", type=int)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="kmeans",
        help="kmeans (default): the cell nearest each of k = budget centres, representative; "
        "kcenter: greedy farthest-point coverage, reaches rare outliers",
    )
    add_features_flag(
        parser, help=f"what the cells are compared on (default {DEFAULT_KIND}, as classify)"
    )
    add_encoder_flag(parser)
    parser.add_argument(
        "--labelled",
        help="the cells labelled so far: a folder with one sub-folder per class (as classify)",
    )
    parser.add_argument(
        "--labels", help="the cells of --images labelled so far: a CSV with columns file,class"
    )
    parser.add_argument(
        "--typical_cells",
        type=int,
        default=TYPICAL_CELLS,
        help="with labels: propose typical, diverse cells until this many are labelled, then "
        f"mostly the classifier's doubts (default {TYPICAL_CELLS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="k-means initialisation seed")
    add_cache_flag(parser)
    return parser


def budget_from(args: argparse.Namespace) -> int:
    """--budget, or --per_class_budget x --expected_classes; exactly one way must be given."""
    per_class = args.per_class_budget is not None or args.expected_classes is not None
    if (args.budget is None) == (not per_class):
        raise ValueError("give either --budget N or --per_class_budget K --expected_classes C")
    if args.budget is not None:
        budget = args.budget
    elif args.per_class_budget is None or args.expected_classes is None:
        raise ValueError("--per_class_budget and --expected_classes go together")
    else:
        budget = args.per_class_budget * args.expected_classes
    if budget < 1:
        raise ValueError(f"the budget must be at least 1 cell, got {budget}")
    return budget


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = build_parser().parse_args(argv)
    with job(PROG, args.out):
        files = run(
            args.images,
            args.out,
            budget_from(args),
            args.method,
            args.features,
            args.encoder,
            args.seed,
            cache_root(not args.no_cache),
            args.labelled,
            args.labels,
            args.typical_cells,
        )
    for key, path in files.items():
        print(f"{key}: {path}")
    return files


if __name__ == "__main__":
    main(sys.argv[1:])
