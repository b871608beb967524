"""visualize: attention maps (extract's input sizes), block upsampling, embedding plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellssl_jax import figures, visualize
from cellssl_jax.encoder import load_encoder
from cellssl_jax.fewshot.features import save_features

SAMPLE = Path(visualize.__file__).parent / "assets" / "sample"


def test_upsample_keeps_patches_as_blocks():
    maps = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    up = figures.upsample(maps, (32, 48), 16)
    assert up.shape == (2, 32, 48)
    assert (up[1, :16, 16:32] == maps[1, 0, 1]).all() and (up[0, 16:, 32:] == maps[0, 1, 2]).all()
    odd = figures.upsample(maps, (20, 37), 16)  # the last patches are cut at the edge
    assert odd.shape == (2, 20, 37)
    assert (odd[1, :16, 16:32] == maps[1, 0, 1]).all() and (odd[0, 16:, 32:] == maps[0, 1, 2]).all()
    with pytest.raises(ValueError, match="do not cover"):
        figures.upsample(maps, (20, 37), 8)


def test_attention_png(tmp_path, tiny_encoder):
    image = sorted((SAMPLE / "labelled" / "monocyte").iterdir())[0]
    out = tmp_path / "att"
    png_file = visualize.main(
        ["attention", "--image", str(image), "--encoder", str(tiny_encoder), "--out", str(out)]
    )
    assert png_file == out / f"attention_{image.stem}.png"
    with Image.open(png_file) as png:
        width, height = png.size
    assert width > 2 * height  # 5 columns (cell + 4 heads) by 2 rows
    with pytest.raises(SystemExit, match="not an image"):
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"nope")
        visualize.main(
            ["attention", "--image", str(bad), "--encoder", str(tiny_encoder), "--out", str(out)]
        )
    with pytest.raises(ValueError, match="image size must be >= 1"):
        figures.attention_png(image, out / "a.png", load_encoder(tiny_encoder), 0)
    with pytest.raises(SystemExit):  # argparse refuses it
        visualize.main(["attention", "--image", str(image), "--encoder", str(tiny_encoder),
                        "--image_size", "0", "--out", str(out)])
    with pytest.raises(SystemExit, match="threshold"):
        visualize.main(
            ["attention", "--image", str(image), "--threshold", "1.5", "--out", str(out)]
        )


def test_embedding_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, -1], 15)
    x = rng.normal(size=(60, 20)) + 10 * np.eye(4, 20)[labels]
    feats = save_features(
        tmp_path / "f.npz", x, labels, ["a", "b", "c"], [f"{i}.png" for i in range(60)], "test", ""
    )
    xy, method = figures.embed_2d(x)
    assert xy.shape == (60, 2) and method in ("UMAP", "t-SNE")
    centres = np.stack([xy[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(xy[labels == k] - centres[k], axis=1).mean() for k in range(3))
    assert np.linalg.norm(centres[0] - centres[1]) > spread  # separated groups stay apart
    out = tmp_path / "emb"
    visualize.main(["embedding", "--features_file", str(feats), "--out", str(out)])
    with Image.open(out / "embedding.png") as png:
        assert png.size[0] > 400
    with pytest.raises(SystemExit, match="does not exist"):
        visualize.main(["embedding", "--features_file", str(tmp_path / "no.npz"),
                        "--out", str(out)])
