"""Explainability figures: class-attention maps of one cell (paper Fig. 5) and a 2-D embedding of
a features file coloured by class (paper Fig. 6).

    python -m cellssl_jax.visualize attention --image CELL.jpg [--encoder F] --out DIR
    python -m cellssl_jax.visualize embedding --features_file F.npz --out DIR
    python -m cellssl_jax.visualize embedding --features_file OUT/unlabelled_features.npz \
        --colour_by OUT/predictions.csv --out DIR   # by classify's predictions

Writes under --out (a folder): attention_<image name>.png or embedding.png, and visualize.log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cellssl_jax import figures
from cellssl_jax.cli import add_alias, add_encoder_flag, add_image_size_flag, add_out_flag
from cellssl_jax.data.images import UnreadableImage
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.logs import fail, job

log = logging.getLogger("cellssl_jax.visualize")

PROG = "python -m cellssl_jax.visualize"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="figure", required=True)
    att = sub.add_parser("attention", help="per-head class-attention maps of one cell")
    att.add_argument("--image", required=True, help="a cell image file")
    add_encoder_flag(att)
    add_out_flag(att)
    add_image_size_flag(att)
    add_alias(att, "--size", "--image_size", type=int)
    att.add_argument(
        "--threshold",
        type=float,
        default=figures.THRESHOLD,
        help="fraction of each head's maximum kept in the bottom row",
    )
    emb = sub.add_parser("embedding", help="2-D embedding of a features file, by class")
    emb.add_argument("--features_file", type=Path,
                     help="features file (.npz) from extract (required)")
    add_alias(emb, "--features", "--features_file", type=Path)
    emb.add_argument(
        "--colour_by",
        help="a CSV whose classes colour the cells instead of the file's labels: classify's "
        "predictions.csv (column 'predicted') or a labels file (columns 'file', 'class'); "
        "files match the cells by name relative to any parent folder",
    )
    add_out_flag(emb)
    emb.add_argument("--seed", type=int, default=0, help="seeds the PCA and UMAP/t-SNE layout")
    return parser


def figure_file(out: Path, name: str) -> tuple[Path, Path]:
    """(folder, png): <out>/<name>; an `--out` ending in .png (the old meaning: the figure
    itself) is accepted for one release, with a warning."""
    if out.suffix != ".png":
        return out, out / name
    print(f"{PROG}: warning: --out {out}: a PNG file is deprecated; give the output folder",
          file=sys.stderr)
    return out.parent, out


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    if args.figure == "attention":
        if not 0.0 < args.threshold <= 1.0:
            fail(PROG, f"--threshold must be in (0, 1], got {args.threshold}")
        folder, out = figure_file(args.out, f"attention_{Path(args.image).stem}.png")
    else:
        if args.features_file is None:
            fail(PROG, "the following arguments are required: --features_file")
        folder, out = figure_file(args.out, "embedding.png")
    with job(PROG, folder):
        try:
            if args.figure == "attention":
                from cellssl_jax.encoder import load_encoder  # JAX only when needed

                encoder = load_encoder(args.encoder)
                figures.attention_png(args.image, out, encoder, args.image_size, args.threshold)
            else:
                figures.embedding_png(load_features(args.features_file), out, args.seed,
                                      args.colour_by)
        except (OSError, UnreadableImage) as err:  # a missing or unreadable file
            fail(PROG, str(err))
        log.info("wrote %s", out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
