"""Recreate the bundled encoder: DINO on unlabelled BM cells + the PBC 70/30 *train* part, on a CPU.

1. prepares the `acevedo` TFDS dataset from ../shared/data/acevedo_pbc_dev (its seeded 70/30 split),
2. links the BM cells (matek_bm_dev, labels unused) and the PBC train-part cells into one flat
   folder of unlabelled images (the PBC test part is never seen by the encoder),
3. runs `python -m cellssl_jax.train` with configs/cpu_tiny.py and the overrides below
   (resumable: rerun the same command after an interruption),
4. copies the teacher backbone to cellssl_jax/assets/encoder_default.msgpack.

    python scripts/pretrain_bundled.py --workdir runs/bundled [--steps 1700]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tensorflow_datasets as tfds

import cellssl_jax.data.builders.acevedo  # noqa: F401  (registers the builder)
from cellssl_jax.encoder import DEFAULT_ENCODER

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSSL_SHARED_DATA", REPO.parent / "shared" / "data"))
# The bundled encoder's recipe on top of configs/cpu_tiny.py (see docs/MODEL_CARD.md).
OVERRIDES = [
    "--config.optim.lr=4e-3",
    "--config.optim.warmup_epochs=1.0",
    "--config.optim.clip_mode=norm",
    "--config.optim.clip=3.0",
    "--config.dino.momentum_teacher=0.99",
    "--config.dino.warmup_teacher_temp=0.04",
    "--config.dino.teacher_temp=0.04",
    "--config.head.out_dim=2048",
    "--config.checkpoint_every=100",
]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bundled")
    parser.add_argument("--steps", type=int, default=1700)
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"real cells not found at {SHARED} (set CELLSSL_SHARED_DATA)")
    cells = unlabelled_folder(args.workdir.parent / "pretrain_cells", args.workdir.parent / "tfds")
    subprocess.run([sys.executable, "-m", "cellssl_jax.train", "--config",
                    str(REPO / "configs" / "cpu_tiny.py"), "--workdir", str(args.workdir),
                    f"--config.data.folder={cells}", f"--config.total_steps={args.steps}",
                    *OVERRIDES], check=True)
    shutil.copyfile(args.workdir / "encoder.msgpack", DEFAULT_ENCODER)
    print(f"bundled encoder -> {DEFAULT_ENCODER}")


if __name__ == "__main__":
    main()
