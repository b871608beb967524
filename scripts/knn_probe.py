"""Does cpu_tiny DINO learn? Train (or reuse) a run, then compare its teacher with the same
model at initialisation by k-NN on cells it never saw.

    python scripts/knn_probe.py --workdir runs/probe --steps 300 \\
        --train ../shared/data/matek_bm_dev --eval ../shared/data/acevedo_pbc_dev

Trains `configs/cpu_tiny.py` on --train for --steps (resuming/skipping if --workdir already
holds that many), exports the teacher at initialisation (same seed) too, embeds up to
--per_class cells per class of --eval at the config's image size, and reports: loss at the
start and end, the teacher-entropy range (collapse check), and k-NN balanced accuracy (cosine,
k=20, stratified 5-fold) of init vs trained CLS features. Writes probe.json in --workdir.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from cellssl_jax.checkpoints import export_teacher
from cellssl_jax.data.pipeline import FolderSource, resize_rgb
from cellssl_jax.encoder import load_encoder
from cellssl_jax.train import (
    augment_config,
    backbone_config,
    build_models,
    init_state,
    make_schedules,
    make_tx,
    train_and_evaluate,
)

REPO = Path(__file__).resolve().parents[1]


def load_preset(path: Path):
    spec = importlib.util.spec_from_file_location("preset", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def knn_accuracy(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    feats = features / np.linalg.norm(features, axis=1, keepdims=True)
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", weights="distance")
    pred = cross_val_predict(knn, feats, labels,
                             cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return float(balanced_accuracy_score(labels, pred))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--config", default=str(REPO / "configs" / "cpu_tiny.py"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train", default=str(REPO.parent / "shared" / "data" / "matek_bm_dev"))
    ap.add_argument("--eval", default=str(REPO.parent / "shared" / "data" / "acevedo_pbc_dev"))
    ap.add_argument("--per_class", type=int, default=100)
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="config overrides, e.g. dino.momentum_teacher=0.98")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    workdir = Path(args.workdir)

    config = load_preset(Path(args.config))
    config.data.folder = args.train
    for item in args.set:
        field, _, value = item.partition("=")
        old = config
        for part in field.split(".")[:-1]:
            old = old[part]
        last = field.split(".")[-1]
        old[last] = type(old[last])(value)
    config.total_steps = args.steps
    trained = train_and_evaluate(config, workdir)

    # the same model at initialisation (same seed -> same initial teacher as the run's)
    student, _ = build_models(config)
    state0 = init_state(config, student, make_tx(config, make_schedules(config, 1, args.steps)))
    aug = augment_config(config)
    init_path = export_teacher(workdir / "encoder_init.msgpack", state0,
                               arch=config.model.arch, model_config=backbone_config(config),
                               mean=aug.mean, std=aug.std, source="DINO teacher at init")

    source = FolderSource(args.eval)
    rng = np.random.default_rng(0)
    labels_all = np.asarray(source.folder.labels)
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels_all == c))[: args.per_class]
                          for c in np.unique(labels_all)])
    size = (config.data.image_size, config.data.image_size)
    images = np.stack([resize_rgb(source[int(i)]["image"], size) for i in idx])
    labels = labels_all[idx]

    result: dict = {"eval_cells": len(idx), "eval_classes": len(np.unique(labels)),
                    "image_size": size[0], "steps": args.steps}
    for name, path in (("init", init_path), ("trained", trained)):
        enc = load_encoder(path)
        feats = np.concatenate([enc.embed(images[i : i + 64]) for i in range(0, len(images), 64)])
        result[f"knn_bal_acc_{name}"] = knn_accuracy(feats, labels)

    recs = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in recs}
    steps = sorted(by_step)
    first, last = steps[: max(1, len(steps) // 10)], steps[-max(1, len(steps) // 10):]
    result["loss_first_10pct"] = float(np.mean([by_step[s]["loss"] for s in first]))
    result["loss_last_10pct"] = float(np.mean([by_step[s]["loss"] for s in last]))
    ent = [by_step[s]["teacher_mean_entropy"] for s in steps]
    result["teacher_batch_mean_entropy_min_max"] = [float(min(ent)), float(max(ent))]
    result["log_out_dim"] = float(np.log(config.head.out_dim))
    result["teacher_entropy_last"] = by_step[steps[-1]]["teacher_entropy"]
    (workdir / "probe.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
