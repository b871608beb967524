"""Does cpu_tiny DINO learn? Train (or reuse) a run, then compare its teacher with the same
model at initialisation by k-NN on cells it never saw.

    python scripts/knn_probe.py --workdir runs/probe --steps 300 \\
        --train ../shared/data/matek_bm_dev --eval ../shared/data/acevedo_pbc_dev \\
        [--config cpu_tiny] [--config.dino.momentum_teacher=0.98 ...]

Trains --config (default the `cpu_tiny` preset; overrides `--config.<field>=<value>` as in
`python -m cellssl_jax.train`) on --train for --steps (resuming/skipping if --workdir already
holds that many), exports the teacher at initialisation (same seed) too, embeds up to
--per_class cells per class of --eval at the config's image size, and reports: the mean loss
per tenth of the run, the teacher-entropy range (collapse check), and k-NN balanced accuracy
(cosine, k=20, stratified 5-fold) of init vs trained CLS features. Writes probe.json in --workdir.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from absl import app, flags
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

import cellssl_jax.train
from cellssl_jax.data import shared_data_dir
from cellssl_jax.data.reading import FolderSource, read_images, resize_rgb
from cellssl_jax.encoder import load_encoder
from cellssl_jax.train import check_usage, parse_flags
from cellssl_jax.trainer import ConfigError, Stopped, build, export_teacher, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]

# --config (default: cpu_tiny, see the end) and --workdir come with cellssl_jax.train.
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cellssl_jax.train)  # listed by --help
flags.DEFINE_integer("steps", 300, "training steps (config.total_steps)")
flags.DEFINE_string("train", str(shared_data_dir() / "matek_bm_dev"),
                    "folder of cells to train on (config.data.folder)")
flags.DEFINE_string("eval", str(shared_data_dir() / "acevedo_pbc_dev"),
                    "folder of class sub-folders for the k-NN probe")
flags.DEFINE_integer("per_class", 100, "at most this many eval cells per class")


def knn_accuracy(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    feats = features / np.linalg.norm(features, axis=1, keepdims=True)
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", weights="distance")
    pred = cross_val_predict(knn, feats, labels,
                             cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return float(balanced_accuracy_score(labels, pred))


def main(argv: list[str]) -> None:
    check_usage(argv)
    workdir = Path(FLAGS.workdir)
    config = FLAGS.config
    config.data.folder = FLAGS.train
    config.total_steps = FLAGS.steps
    try:
        trained = train_and_evaluate(config, workdir)
    except ConfigError as err:
        raise SystemExit(f"knn_probe: {err}") from None
    except Stopped as err:  # already logged
        raise SystemExit(err.exit_code) from None

    # the same model at initialisation (same seed -> same initial teacher as the run's)
    run = build(config, num_examples=config.batch_size)
    init_path = export_teacher(workdir / "encoder_init.msgpack", run.init_state(),
                               arch=config.model.arch, model_config=run.arch_kw,
                               mean=run.augment.mean, std=run.augment.std,
                               source="DINO teacher at init")

    source = FolderSource(FLAGS.eval)
    rng = np.random.default_rng(0)
    labels_all = np.asarray(source.folder.labels)
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels_all == c))[: FLAGS.per_class]
                          for c in np.unique(labels_all)])
    size = (config.data.image_size, config.data.image_size)
    resize = lambda item: {**item, "image": resize_rgb(item["image"], size)}  # noqa: E731
    read = [it for it in read_images(source, idx, resize) if it["image"] is not None]
    images = np.stack([it["image"] for it in read])
    labels = labels_all[[it["index"] for it in read]]

    result: dict = {"eval_cells": len(labels), "eval_classes": len(np.unique(labels)),
                    "image_size": size[0], "steps": FLAGS.steps}
    for name, path in (("init", init_path), ("trained", trained)):
        enc = load_encoder(path)
        feats = np.concatenate([enc.embed(images[i : i + 64]) for i in range(0, len(images), 64)])
        result[f"knn_bal_acc_{name}"] = knn_accuracy(feats, labels)

    recs = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in recs}
    steps = sorted(by_step)
    # mean loss per tenth of the run: DINO's loss first rises while the teacher leaves its
    # (student-identical) start, then falls; first-vs-last alone hides that shape
    tenths = np.array_split(np.array([by_step[s]["loss"] for s in steps]), 10)
    result["loss_by_tenth"] = [round(float(t.mean()), 4) for t in tenths if len(t)]
    ent = [by_step[s]["teacher_mean_entropy"] for s in steps]
    result["teacher_batch_mean_entropy_min_max"] = [float(min(ent)), float(max(ent))]
    result["log_out_dim"] = float(np.log(config.head.out_dim))
    result["teacher_entropy_last"] = by_step[steps[-1]]["teacher_entropy"]
    (workdir / "probe.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main, flags_parser=functools.partial(parse_flags, default_config="cpu_tiny"))
