"""Recreate the bundled encoder, in one of its two stages (docs/MODEL_CARD.md).

`--stage gpu`: DINO from scratch (preset `bundled_encoder`) on the BM dev cells and the PBC
cells of the builders' 70/30 *train* part, as 128 px copies; 1,223 steps took 4.4 min on one
H200 (docs/measurements/2026-11-26_h200). `--stage cpu`: continues a stage-gpu encoder
(`--init_encoder`, default the shipped file) on a 2-core CPU (preset `bundled_cpu`) on more
cells: BM dev, the PBC *fit* part only (never validation or test, `three_way_split`), and the
unlabelled PBC, AML-blood and Raabin/BCD white-cell folders of ../shared/data.

    python scripts/release/pretrain_bundled.py --stage gpu --workdir runs/bundled
    git show 908986b:cellssl_jax/assets/encoder_default.msgpack > runs/h200.msgpack
    python scripts/release/pretrain_bundled.py --stage cpu --workdir runs/bundled_cpu \\
        --init_encoder runs/h200.msgpack --export_step 30   # the shipped file

Both resume when rerun after an interruption. The teacher backbone is copied to --export (default:
cellssl_jax/assets/encoder_default.msgpack); every field of the file comes from the config.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from cellssl_jax.data import shared_data_dir
from cellssl_jax.data.images import scan_folder
from cellssl_jax.encoder import DEFAULT_ENCODER
from cellssl_jax.fewshot.sampling import builder_parts
from cellssl_jax.trainer import export_checkpoint

SHARED = shared_data_dir()
UNLABELLED = ("acevedo_pbc_unlabelled", "matek_blood_unlabelled", "wbc_crops_unlabelled")
STAGES = {  # config, PBC dev parts used, extra unlabelled folders, default steps
    "gpu": ("bundled_encoder", ("fit", "validation"), (), 1223),
    "cpu": ("bundled_cpu", ("fit",), UNLABELLED, 640),
}


def pbc_parts() -> dict[Path, str]:
    """Each PBC dev cell's part ("fit", "validation", "test"), by the builders' id-seeded rule."""
    cells = scan_folder(SHARED / "acevedo_pbc_dev")
    parts = builder_parts(cells.paths, cells.labels, cells.class_names)
    return dict(zip(cells.paths, parts, strict=True))


def unlabelled_folder(root: Path, parts: tuple[str, ...], extra: tuple[str, ...]) -> Path:
    """BM cells, the chosen PBC parts and the `extra` folders as symlinks, one sub-folder each."""
    if root.exists():
        return root
    groups = {"bm": sorted((SHARED / "matek_bm_dev").rglob("*.jpg")),
              "pbc_" + "_".join(parts): [p for p, part in pbc_parts().items() if part in parts]}
    groups.update({name: sorted((SHARED / name).rglob("*.jpg")) for name in extra})
    for group, paths in groups.items():
        (root / group).mkdir(parents=True)
        for path in paths:
            (root / group / f"{path.parent.name}_{path.name}").symlink_to(path.resolve())
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
    parser.add_argument("--stage", choices=sorted(STAGES), default="gpu")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, help="default: the stage's (1223 gpu, 640 cpu)")
    parser.add_argument("--copies_at", type=int, default=128, metavar="SIZE",
                        help="train on SIZE x SIZE JPEG copies (0: the original files)")
    parser.add_argument("--init_encoder", type=Path, default=DEFAULT_ENCODER,
                        help="stage cpu: the encoder to continue")
    parser.add_argument("--export", type=Path, default=DEFAULT_ENCODER)
    parser.add_argument("--export_step", type=int, default=0,
                        help="export this checkpoint's teacher instead of the run's last (the "
                        "shipped file: stage cpu, step 30, chosen on validation)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"real cells not found at {SHARED} (set CELLSSL_SHARED_DATA)")
    config, parts, extra, steps = STAGES[args.stage]
    cells = unlabelled_folder(args.workdir / "cells", parts, extra)
    if args.copies_at:
        cells = resized_copies(cells, args.workdir / f"cells_{args.copies_at}", args.copies_at)
    cmd = [sys.executable, "-m", "cellssl_jax.train", "--config", config,
           "--workdir", str(args.workdir / "run"), f"--config.data.folder={cells}",
           f"--config.total_steps={args.steps or steps}"]
    if args.stage == "cpu":
        cmd.append(f"--config.init_encoder={args.init_encoder}")
    subprocess.run(cmd, check=True)
    if args.export_step:
        export_checkpoint(args.workdir / "run", args.export_step, args.export)
    else:
        shutil.copyfile(args.workdir / "run" / "encoder.msgpack", args.export)
    print(f"encoder -> {args.export}")


if __name__ == "__main__":
    main()
