"""Recreate the bundled encoder: DINO on unlabelled BM cells + the PBC 70/30 *train* part.

1. prepares the `acevedo` TFDS dataset from ../shared/data/acevedo_pbc_dev (its seeded 70/30 split),
2. links the BM cells (matek_bm_dev, labels unused) and the PBC train-part cells into one folder
   of unlabelled images (the PBC test part is never seen by the encoder); with --copies_at S it
   writes S x S JPEG copies instead (small enough to carry to an accelerator machine: the shipped
   encoder was trained on 128 px copies),
3. runs `python -m cellssl_jax.train --config configs/bundled_encoder.py` for --steps
   (resumable: rerun the same command after an interruption),
4. copies the teacher backbone to cellssl_jax/assets/encoder_default.msgpack.

    python scripts/pretrain_bundled.py --workdir runs/bundled [--steps 1223] [--copies_at 128]

The shipped encoder: 1,223 steps (4.4 min, compile included) on one H200
(docs/measurements/2026-11-26_h200).
The recipe needs an accelerator; docs/MODEL_CARD.md also reports the earlier 2-core-CPU run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tensorflow_datasets as tfds
from PIL import Image

import cellssl_jax.data.builders.acevedo  # noqa: F401  (registers the builder)
from cellssl_jax.encoder import DEFAULT_ENCODER

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSSL_SHARED_DATA", REPO.parent / "shared" / "data"))


def unlabelled_folder(root: Path, tfds_dir: Path) -> Path:
    """BM cells + PBC train-part cells as symlinks in one folder (two sub-folders, no labels)."""
    if not (tfds_dir / "acevedo").exists():
        subprocess.run([sys.executable, "-m", "cellssl_jax.data.prepare", "acevedo",
                        "--manual_dir", str(SHARED / "acevedo_pbc_dev"),
                        "--data_dir", str(tfds_dir)], check=True)
    if root.exists():
        return root
    (root / "bm").mkdir(parents=True)
    (root / "pbc_train").mkdir()
    for path in (SHARED / "matek_bm_dev").rglob("*.jpg"):
        (root / "bm" / f"{path.parent.name}_{path.name}").symlink_to(path.resolve())
    by_name = {p.name: p.resolve() for p in (SHARED / "acevedo_pbc_dev").rglob("*.jpg")}
    train = tfds.data_source("acevedo", split="train", data_dir=str(tfds_dir),
                             decoders={"image": tfds.decode.SkipDecoding()})  # names only
    for i in range(len(train)):
        name = Path(train[i]["file_name"].decode()).name
        (root / "pbc_train" / name).symlink_to(by_name[name])
    return root


def resized_copies(cells: Path, out: Path, size: int) -> Path:
    """size x size JPEG (quality 95) copies of every cell, same sub-folders and names."""
    if out.exists():
        return out
    for path in sorted(cells.rglob("*.jpg")):
        target = out / path.relative_to(cells)
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path).convert("RGB")
        image.resize((size, size), Image.Resampling.BILINEAR).save(target, quality=95)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bundled")
    parser.add_argument("--steps", type=int, default=1223)
    parser.add_argument("--copies_at", type=int, default=0, metavar="SIZE",
                        help="train on SIZE x SIZE JPEG copies (0: the original files)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"real cells not found at {SHARED} (set CELLSSL_SHARED_DATA)")
    cells = unlabelled_folder(args.workdir.parent / "pretrain_cells", args.workdir.parent / "tfds")
    if args.copies_at:
        cells = resized_copies(cells, cells.with_name(f"pretrain_cells_{args.copies_at}"),
                               args.copies_at)
    subprocess.run([sys.executable, "-m", "cellssl_jax.train", "--config",
                    str(REPO / "configs" / "bundled_encoder.py"), "--workdir", str(args.workdir),
                    f"--config.data.folder={cells}", f"--config.total_steps={args.steps}"],
                   check=True)
    shutil.copyfile(args.workdir / "encoder.msgpack", DEFAULT_ENCODER)
    print(f"bundled encoder -> {DEFAULT_ENCODER}")


if __name__ == "__main__":
    main()
