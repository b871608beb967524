"""The paper preset end to end: trains a few steps, exports, and `extract` reads the export
without extra flags (issue 11: its 250 px export used to be refused as no multiple of patch 8)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cellssl_jax.encoder import load_encoder
from cellssl_jax.extract import main as extract_main
from cellssl_jax.fewshot.features import load_features

REPO = Path(__file__).resolve().parents[1]
# the paper_xcit_s12_p8 preset with a tiny model, head and crops: everything else (patch 8,
# the paper's augmentation, optimiser, export) is the preset's own
TINY_PAPER = [
    "--config=paper_xcit_s12_p8", "--config.data.tfds_name=",
    "--config.model.embed_dim=32", "--config.model.depth=1", "--config.model.num_heads=2",
    "--config.head.out_dim=64", "--config.head.hidden_dim=32", "--config.head.bottleneck_dim=16",
    "--config.augment.global_size=16", "--config.augment.local_size=8",
    "--config.augment.n_local=1", "--config.data.image_size=37", "--config.batch_size=4",
    "--config.total_steps=3", "--config.log_every=1", "--config.data.workers=2",
]


def test_paper_preset_trains_exports_and_extract_reads_it(tmp_path):
    cells = tmp_path / "cells"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["a", "b"]):
        (cells / name).mkdir(parents=True)
        for i in range(4):  # 37 px: not a multiple of the patch (8), as the paper's 250 px
            pixels = rng.integers(0, 256, (37, 37, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(cells / name / f"{i}.png")
    workdir = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, "-m", "cellssl_jax.train", *TINY_PAPER, f"--workdir={workdir}",
         f"--config.data.folder={cells}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    encoder = workdir / "encoder.msgpack"
    enc = load_encoder(encoder)
    assert enc.model.patch_size == 8 and enc.dim == 32
    assert enc.input_size is None  # export_input_size 0: the paper reads cells at native size

    out = tmp_path / "f.npz"
    stats = extract_main(["--images", str(cells), "--checkpoint", str(encoder),
                          "--out", str(out), "--batch_size", "4"])
    feats = load_features(out)
    assert feats.features.shape == (8, 32) and np.isfinite(feats.features).all()
    assert stats["shapes"] == [(32, 32)]  # native 37 rounded to the 32 grid
    assert np.abs(feats.features[0] - feats.features[-1]).max() > 1e-4

    native = extract_main(["--images", str(cells), "--checkpoint", str(encoder),
                           "--out", str(tmp_path / "n.npz"), "--image_size", "native",
                           "--batch_size", "4"])
    assert native["shapes"] == [(37, 37)]
    image = np.asarray(Image.open(feats.paths[0]))
    np.testing.assert_allclose(load_features(tmp_path / "n.npz").features[0],
                               enc.embed(image[None])[0], atol=1e-5)
