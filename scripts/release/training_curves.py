"""Training curves of a DINO run, for a model card: loss, teacher entropy and a k-NN probe of
every kept checkpoint's teacher on the PBC *validation* part, in one PNG (+ a JSON of the points).

Each checkpoint under `<workdir>/checkpoints` is exported as the run exports its encoder
(`trainer.export_checkpoint`, to `<out>/encoder_step<N>.msgpack`); with `init_encoder` set, the
run's start is the point at step 0. The probe: CLS features of the validation cells
(`three_way_split` of ../shared/data/acevedo_pbc_dev) read at --size x --size, cosine k-NN
(k = 20, distance-weighted), stratified 5-fold balanced accuracy; colour histograms of the same
cells are the baseline line.

    python scripts/release/training_curves.py --workdir runs/bundled_cpu/run \\
        --out runs/bundled_cpu/curves [--size 224]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from cellssl_jax.colorhist import colour_histogram  # noqa: E402
from cellssl_jax.data import shared_data_dir  # noqa: E402
from cellssl_jax.data.images import read_rgb, scan_folder  # noqa: E402
from cellssl_jax.data.reading import resize_rgb  # noqa: E402
from cellssl_jax.encoder import load_encoder  # noqa: E402
from cellssl_jax.fewshot.knn import knn_accuracy  # noqa: E402
from cellssl_jax.fewshot.sampling import builder_parts  # noqa: E402
from cellssl_jax.trainer import export_checkpoint  # noqa: E402
from cellssl_jax.trainer.checkpoints import Checkpointer  # noqa: E402


def validation_cells() -> tuple[list[Path], np.ndarray]:
    """Paths and class indices of the PBC dev cells in the validation part."""
    cells = scan_folder(shared_data_dir() / "acevedo_pbc_dev")
    keep = np.flatnonzero(builder_parts(cells.paths, cells.labels, cells.class_names)
                          == "validation")
    return [cells.paths[i] for i in keep], cells.labels[keep]


def teachers(workdir: Path, out: Path) -> dict[int, Path]:
    """Step -> exported teacher of every checkpoint (step 0: the run's init_encoder, if any).
    A run without checkpoints here (a device machine sends back only the exported teachers)
    uses the `<out>/encoder_step<N>.msgpack` files already there."""
    if not (workdir / "checkpoints").is_dir():
        found = {int(p.stem.removeprefix("encoder_step")): p
                 for p in out.glob("encoder_step*.msgpack")}
        if not found:
            raise SystemExit(f"no checkpoints in {workdir} and no encoder_step<N>.msgpack in {out}")
        return dict(sorted(found.items()))
    ckpt = Checkpointer(workdir, keep=1 << 30)  # reading only
    steps = ckpt.manager.all_steps()
    meta = ckpt.manager.restore(steps[0], args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    ckpt.close()
    start = meta["meta"]["config"]["init_encoder"]
    found = {0: Path(start)} if start else {}
    for step in steps:
        found[step] = out / f"encoder_step{step}.msgpack"
        if not found[step].exists():
            export_checkpoint(workdir, step, found[step])
    return dict(sorted(found.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the training run's folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=224, help="probe read size (square)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    paths, labels = validation_cells()
    raw = [read_rgb(p) for p in paths]
    images = np.stack([resize_rgb(im, (args.size, args.size)) for im in raw])
    colour = knn_accuracy(np.stack([colour_histogram(im) for im in raw]), labels)
    points_file = args.out / "probe.json"
    points = json.loads(points_file.read_text()) if points_file.exists() else {}
    for step, path in teachers(args.workdir, args.out).items():
        if str(step) not in points:
            enc = load_encoder(path)
            feats = np.concatenate([enc.embed(images[i:i + 64])
                                    for i in range(0, len(images), 64)])
            points[str(step)] = knn_accuracy(feats, labels)
            print(f"step {step}: k-NN {points[str(step)]:.1%} (colour {colour:.1%})", flush=True)
            points_file.write_text(json.dumps(points, indent=1))

    recs = [json.loads(line) for line in (args.workdir / "metrics.jsonl").read_text().splitlines()]
    step = [r["step"] for r in recs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    axes[0].plot(step, [r["loss"] for r in recs], lw=0.8)
    axes[0].set(title="DINO loss", xlabel="step")
    axes[1].plot(step, [r["teacher_entropy"] for r in recs], lw=0.8, label="per sample")
    axes[1].plot(step, [r["teacher_mean_entropy"] for r in recs], lw=0.8, label="batch mean")
    axes[1].set(title="teacher entropy (nats; collapse -> 0 or uniform)", xlabel="step")
    axes[1].legend()
    probe = sorted((int(s), a) for s, a in points.items())
    axes[2].plot([s for s, _ in probe], [100 * a for _, a in probe], "o-", label="encoder")
    axes[2].axhline(100 * colour, color="grey", ls="--", label="colour histograms")
    axes[2].set(title=f"k-NN on PBC validation ({len(paths)} cells, {args.size} px)",
                xlabel="step", ylabel="balanced accuracy (%)")
    axes[2].legend()
    fig.savefig(args.out / "training_curves.png", dpi=110)
    summary = {"validation_cells": len(paths), "size": args.size, "colour_knn": colour,
               "encoder_knn_by_step": dict(probe)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'training_curves.png'}")


if __name__ == "__main__":
    main()
