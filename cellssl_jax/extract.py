"""Feature extraction: an encoder (or the colour-histogram baseline) over a dataset.

  python -m cellssl_jax.extract --images DIR --out OUT                 # bundled encoder
  python -m cellssl_jax.extract --images tfds:acevedo/test --data_dir D --out OUT
  python -m cellssl_jax.extract --images DIR --features colorhist --out OUT
  python -m cellssl_jax.extract --images DIR --features xcit+colorhist --encoder ENC --out OUT

Writes under --out (a folder): features.npz (features, labels, class_names, paths, encoder,
encoder_sha256, skipped, read_size), features.skipped.csv (unreadable images, skipped) and
features.flagged.csv (doubtful ones: greyscale, transparent, far larger than the read size;
kept) when there are any, and extract.log.

Image size (cellssl_jax/featurize): by default the encoder's `input_size` (and, when its file
has one, its crop rule: only the cell, at that scale, e.g. the bundled encoder's), else each
image's native size rounded to multiples of 32; `--image_size S` forces S x S of the whole
image, `--image_size native` reads every image at exactly its own size (the paper's protocol).
Images of one shape are batched together and every batch is padded to `--batch_size`, so each
shape compiles once.

Features cache (cellssl_jax/cache.py): the encoder's row of each image is kept, keyed by the
image's pixels, the encoder's sha256 and the read size, so no job encodes a cell twice;
`--no_cache` bypasses it. Resumable: every `--save_every` seconds the rows done so far go to
features.npz.partial.npz; a rerun with the same arguments continues from there.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cellssl_jax.cache import cache_root
from cellssl_jax.cli import (
    add_cache_flag,
    add_encoder_flag,
    add_features_flag,
    add_image_size_flag,
    add_out_flag,
)
from cellssl_jax.featurize import featurize, make_featurizer, open_source
from cellssl_jax.logs import fail, job

log = logging.getLogger("cellssl_jax.extract")

PROG = "python -m cellssl_jax.extract"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", required=True, help="folder (class sub-folders or flat) or tfds:<name>/<split>"
    )
    add_out_flag(parser)
    add_features_flag(parser, default="xcit")
    add_encoder_flag(parser)
    parser.add_argument("--data_dir", default=None, help="TFDS data dir for tfds: inputs")
    parser.add_argument(
        "--batch_size", type=int, default=32, help="images per encoder call (default 32)"
    )
    add_image_size_flag(parser)
    parser.add_argument("--workers", type=int, default=4, help="image reading threads")
    parser.add_argument(
        "--save_every", type=float, default=60.0, help="seconds between partial saves (resume)"
    )
    add_cache_flag(parser)
    return parser


def features_file(out: Path) -> Path:
    """<out>/features.npz; an `--out` ending in .npz (the old meaning: the file itself) is
    accepted for one release, with a warning."""
    if out.suffix != ".npz":
        return out / "features.npz"
    log.warning("--out %s: a features file is deprecated; give the output folder (features go "
                "to <out>/features.npz)", out)
    return out


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.workers < 1:
        fail(PROG, "--batch_size and --workers must be >= 1")
    folder = args.out.parent if args.out.suffix == ".npz" else args.out
    with job(PROG, folder):
        out = features_file(args.out)
        source = open_source(args.images, args.data_dir)
        featurizer = make_featurizer(
            args.features,
            args.encoder,
            args.batch_size,
            args.image_size,
            cache_root(not args.no_cache),
        )
        _, stats = featurize(source, args.images, featurizer, out, args.workers, args.save_every)
        log.info(
            "wrote %s: %d images (%d skipped, %d encoded, %d from the cache), %.1f img/s, "
            "shapes %s",
            out,
            stats["images"],
            stats["skipped"],
            stats["encoded"],
            stats["from_cache"],
            stats["images_per_second"],
            stats["shapes"] or "n/a",
        )
    return stats


if __name__ == "__main__":
    main()
