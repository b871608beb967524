"""Prepare a dataset from the user's copy of a release (or a lab folder), without TensorFlow.

    python -m cellssl_jax.data.prepare acevedo --manual_dir ~/PBC_dataset_normal_DIB \
        --data_dir ~/tensorflow_datasets
    python -m cellssl_jax.data.prepare image_folder --manual_dir my_cells/ --data_dir DIR

Writes array_record splits plus skipped.csv / duplicates.csv under
<data_dir>/<name>[/<config>]/<version>/ and prints the per-split, per-class counts.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

BUILDERS = ("matek_bm", "matek_blood", "acevedo", "raabin", "image_folder")


def make_builder(name: str, manual_dir: Path, data_dir: Path, config: str | None = None):
    """The builder object for `name` (image_folder reads its classes from `manual_dir`)."""
    from cellssl_jax.data import builders

    classes = {
        "matek_bm": builders.MatekBm,
        "matek_blood": builders.MatekBlood,
        "acevedo": builders.Acevedo,
        "raabin": builders.Raabin,
    }
    if name == "image_folder":
        return builders.ImageFolder(root=manual_dir, config=config, data_dir=str(data_dir))
    return classes[name](data_dir=str(data_dir))


def prepare(
    name: str,
    manual_dir: str | Path,
    data_dir: str | Path,
    config: str | None = None,
    overwrite: bool = False,
):
    """Build the dataset; returns the prepared builder."""
    import tensorflow_datasets as tfds

    manual_dir, data_dir = Path(manual_dir).expanduser(), Path(data_dir).expanduser()
    builder = make_builder(name, manual_dir, data_dir, config)
    mode = (
        tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
        if overwrite
        else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode)
    )
    return builder


def summary(builder) -> str:
    """Per-split, per-class counts read back from the prepared data (labels only)."""
    import tensorflow_datasets as tfds

    names = builder.info.features["label"].names
    skip_image = {"image": tfds.decode.SkipDecoding()}
    lines = [f"{builder.info.full_name} at {builder.data_dir}"]
    for split in sorted(builder.info.splits):
        source = builder.as_data_source(split=split, decoders=skip_image)
        labels = np.array([source[i]["label"] for i in range(len(source))])
        counts = {
            (names[k] if k >= 0 else "unlabelled"): int((labels == k).sum())
            for k in np.unique(labels)
        }
        lines.append(f"  {split}: {len(labels)} {counts}")
    for csv_name in ("skipped.csv", "duplicates.csv"):
        rows = (Path(builder.data_dir) / csv_name).read_text().splitlines()[1:]
        lines.append(f"  {csv_name}: {len(rows)} files")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cellssl_jax.data.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=BUILDERS)
    parser.add_argument(
        "--manual_dir",
        required=True,
        type=Path,
        help="your extracted copy of the release (or your image folder)",
    )
    parser.add_argument(
        "--data_dir", required=True, type=Path, help="where the prepared TFDS data goes"
    )
    parser.add_argument(
        "--config",
        default=None,
        help="image_folder only: dataset config name (default: folder name)",
    )
    parser.add_argument("--overwrite", action="store_true", help="rebuild if already prepared")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.manual_dir.is_dir():
        raise SystemExit(f"--manual_dir {args.manual_dir} is not a folder")
    try:
        builder = prepare(args.name, args.manual_dir, args.data_dir, args.config, args.overwrite)
    except (ValueError, FileNotFoundError, AssertionError) as err:  # TFDS asserts on empty dirs
        raise SystemExit(f"cannot prepare {args.name}: {err}") from None
    print(summary(builder))


if __name__ == "__main__":
    main()
