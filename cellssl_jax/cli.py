"""The flags every job spells the same way (docs/CLI.md).

snake_case flags; `--encoder` names an encoder file; `--features` the kind of features (KINDS);
`--out` the output folder; `--no_cache` bypasses the features cache. Old spellings stay as
hidden aliases for one release: they still work and print a deprecation warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellssl_jax.feature_kinds import DEFAULT_KIND, KINDS, NATIVE


class _Deprecated(argparse.Action):
    """An old spelling of `new`: stores into the same destination, warns on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in "
              f"the next release; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_alias(parser: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    """Accept `old` as a hidden, deprecated spelling of the flag `new` (same `type` etc.)."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


def add_encoder_flag(parser: argparse.ArgumentParser) -> None:
    """--encoder FILE (old spelling --checkpoint, which clashes with orbax checkpoints)."""
    parser.add_argument("--encoder", type=Path, default=None,
                        help="encoder file (.msgpack; default: the bundled encoder)")
    add_alias(parser, "--checkpoint", "--encoder", type=Path)


def add_features_flag(parser: argparse.ArgumentParser, default: str = DEFAULT_KIND,
                      help: str | None = None) -> None:
    """--features KIND: which features the job computes."""
    parser.add_argument(
        "--features",
        choices=KINDS,
        default=default,
        help=help or f"xcit: the encoder's CLS features; colorhist: 3x32-bin colour histograms; "
        f"cellshape: the nucleus's shape and the colour around it; joined by '+': side by side "
        f"(default {default})",
    )


def add_cache_flag(parser: argparse.ArgumentParser) -> None:
    """--no_cache, as every job that extracts features offers it."""
    parser.add_argument(
        "--no_cache",
        action="store_true",
        help="neither read nor add to the features cache ($CELLSSL_CACHE, default "
        "~/.cache/cellssl_jax/features): encode every image",
    )


def add_out_flag(parser: argparse.ArgumentParser, default: Path | None = None) -> None:
    """--out DIR: the folder every output (and `<job>.log`) goes to."""
    parser.add_argument("--out", type=Path, required=default is None, default=default,
                        help="output folder" + (f" (default {default})" if default else ""))


def _image_size(text: str) -> int | str:
    if text == NATIVE:
        return NATIVE
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"expected a side >= 1 or {NATIVE!r}, got {text!r}")
    return size


def add_image_size_flag(parser: argparse.ArgumentParser) -> None:
    """--image_size S|native: how the encoder reads images (featurize.read_size)."""
    parser.add_argument(
        "--image_size",
        type=_image_size,
        default=None,
        help="S: resize every image to SxS (any S >= 1); native: every image at exactly its "
        "own size (the paper's protocol); default: the encoder's input_size if it has one "
        "(with its crop rule when its file has one: only the cell), else native size rounded "
        "to multiples of 32",
    )
