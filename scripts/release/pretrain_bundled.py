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

`--stage h200` (issue 24): the stage-gpu recipe from scratch on the cells of stage cpu, with BM
dev's fit part only (no validation or test cell of either dev set), preset `bundled_h200`.

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
ALL = ("fit", "validation", "test")
STAGES = {  # config, PBC dev parts used, BM dev parts used, extra unlabelled folders, steps
    "gpu": ("bundled_encoder", ("fit", "validation"), ALL, (), 1223),
    "cpu": ("bundled_cpu", ("fit",), ALL, UNLABELLED, 640),
    "h200": ("bundled_h200", ("fit",), ("fit",), UNLABELLED, 1400),
}


def dev_cells(folder: str, parts: tuple[str, ...]) -> list[Path]:
    """The cells of a labelled dev folder in the given parts ("fit", "validation", "test"), by
    the builders' id-seeded rule."""
    cells = scan_folder(SHARED / folder)
    cell_parts = builder_parts(cells.paths, cells.labels, cells.class_names)
    return [p for p, part in zip(cells.paths, cell_parts, strict=True) if part in parts]


def unlabelled_folder(root: Path, pbc: tuple[str, ...], bm: tuple[str, ...],
                      extra: tuple[str, ...]) -> Path:
    """The chosen BM and PBC dev parts and the `extra` folders as symlinks, one sub-folder each."""
    if root.exists():
        return root
    if not SHARED.is_dir():
        raise SystemExit(f"real cells not found at {SHARED} (set CELLSSL_SHARED_DATA)")
    groups = {"bm" if bm == ALL else "bm_" + "_".join(bm): dev_cells("matek_bm_dev", bm),
              "pbc_" + "_".join(pbc): dev_cells("acevedo_pbc_dev", pbc)}
    groups.update({name: sorted((SHARED / name).rglob("*.jpg")) for name in extra})
    for group, paths in groups.items():
        (root / group).mkdir(parents=True)
        for path in paths:
            (root / group / f"{path.parent.name}_{path.name}").symlink_to(path.resolve())
    return root


def resized_copies(cells: Path, out: Path, size: int, quality: int) -> Path:
    """size x size JPEG copies of every cell, same sub-folders and names."""
    if out.exists():
        return out
    for path in sorted(cells.rglob("*.jpg")):
        target = out / path.relative_to(cells)
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path).convert("RGB")
        image.resize((size, size), Image.Resampling.BILINEAR).save(target, quality=quality)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=sorted(STAGES), default="gpu")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int,
                        help="default: the stage's (1223 gpu, 640 cpu, 1400 h200)")
    parser.add_argument("--copies_at", type=int, default=128, metavar="SIZE",
                        help="train on SIZE x SIZE JPEG copies (0: the original files)")
    parser.add_argument("--quality", type=int, default=95,
                        help="JPEG quality of the copies (85 fits the 6,393 h200 cells in 33 MB, "
                        "under what a device machine carries)")
    parser.add_argument("--copies_only", action="store_true",
                        help="gather the cells (and their copies) and stop: to carry them to a "
                        "device machine and train there with the same command")
    parser.add_argument("--init_encoder", type=Path, default=DEFAULT_ENCODER,
                        help="stage cpu: the encoder to continue")
    parser.add_argument("--export", type=Path, default=DEFAULT_ENCODER)
    parser.add_argument("--export_step", type=int, default=0,
                        help="export this checkpoint's teacher instead of the run's last (the "
                        "shipped file: stage cpu, step 30, chosen on validation)")
    args = parser.parse_args()
    config, pbc, bm, extra, steps = STAGES[args.stage]
    copies = args.workdir / f"cells_{args.copies_at}"
    if args.copies_at and copies.exists():  # made before (a device machine carries only these)
        cells = copies
    else:
        cells = unlabelled_folder(args.workdir / "cells", pbc, bm, extra)
        if args.copies_at:
            cells = resized_copies(cells, copies, args.copies_at, args.quality)
    if args.copies_only:
        print(f"cells -> {cells}")
        return
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
