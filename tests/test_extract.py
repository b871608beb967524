import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_XCIT as CONFIG
from PIL import Image

from cellssl_jax import colorhist
from cellssl_jax.data.reading import FolderSource
from cellssl_jax.encoder import load_encoder, save_encoder
from cellssl_jax.extract import main
from cellssl_jax.featurize import (
    ColourHistogram,
    bucket_size,
    featurize,
    make_featurizer,
    read_size,
)
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.models.xcit import XCiT


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes, two native sizes, one corrupt file."""
    root = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["eosinophil", "neutrophil"]):
        (root / name).mkdir()
        for i in range(20):
            size = (30, 34) if i % 4 else (60, 64)
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    (root / "neutrophil" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def test_bucket_size_rounds_to_multiples():
    assert bucket_size(360, 363) == (352, 352)
    assert bucket_size(250, 250) == (256, 256)
    assert bucket_size(575, 575) == (576, 576)
    assert bucket_size(10, 100) == (32, 96)


def test_colour_histogram_matches_numpy():
    img = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    hist = colorhist.colour_histogram(img)
    ref = np.concatenate(
        [np.histogram(img[..., ch], bins=32, range=(0, 256))[0] / 63 for ch in range(3)]
    )
    np.testing.assert_allclose(hist, ref, rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        colorhist.colour_histogram(img.astype(np.float32))


def test_extract_folder_matches_encoder_and_lists_skipped(tiny_encoder, folder, tmp_path):
    stats = main(
        ["--images", str(folder), "--encoder", str(tiny_encoder), "--out", str(tmp_path / "f")]
        + ["--batch_size", "4"]
    )
    out = tmp_path / "f" / "features.npz"
    feats = load_features(out)
    assert feats.features.shape == (40, 32) and stats["skipped"] == 1
    assert feats.class_names == ["eosinophil", "neutrophil"]
    assert np.bincount(feats.labels).tolist() == [20, 20]
    assert feats.skipped == [str(folder / "neutrophil" / "broken.jpg")]
    assert stats["shapes"] == [(32, 32), (64, 64)]  # two native sizes -> two buckets
    enc = load_encoder(tiny_encoder)
    assert feats.encoder == "tiny" and feats.encoder_sha256 == enc.sha256
    assert feats.read_size == "native/32"  # recorded so evaluate can refuse mixed reads
    # row i is the encoder's CLS feature of path i, resized to its bucket
    first = np.asarray(Image.open(feats.paths[1]))
    ref = enc.embed(np.asarray(Image.fromarray(first).resize((32, 32), Image.BILINEAR))[None])
    np.testing.assert_allclose(feats.features[1], ref[0], atol=1e-5)
    rows = list(csv.reader((tmp_path / "f" / "features.skipped.csv").open()))
    assert rows[1][0].endswith("broken.jpg") and "corrupt" in rows[1][1]
    assert not (tmp_path / "f" / "features.npz.partial.npz").exists()
    assert "wrote" in (tmp_path / "f" / "extract.log").read_text()


class _Dies:
    """A source that fails at `fail_at` (a killed run) and counts what it reads."""

    def __init__(self, inner, fail_at=None):
        self.inner, self.fail_at, self.reads = inner, fail_at, 0
        self.class_names = inner.class_names
        self.folder = inner.folder

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise RuntimeError("killed")
        self.reads += 1
        return self.inner[i]


def test_extract_resumes_after_a_kill(folder, tmp_path):
    source = FolderSource(folder)
    extractor = ColourHistogram(batch_size=2)  # chunks of 16 images
    full = tmp_path / "full.npz"
    featurize(source, "spec", extractor, full, workers=1, save_every=0)
    out = tmp_path / "r.npz"
    with pytest.raises(RuntimeError, match="killed"):
        featurize(_Dies(source, fail_at=35), "spec", extractor, out, workers=1, save_every=0)
    assert (tmp_path / "r.npz.partial.npz").exists()
    again = _Dies(source)
    featurize(again, "spec", extractor, out, workers=1, save_every=0)
    assert again.reads == len(source) - 32  # two finished chunks were not read again
    a, b = load_features(full), load_features(out)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.paths == b.paths and a.skipped == b.skipped
    with pytest.raises(RuntimeError, match="killed"):
        featurize(_Dies(source, fail_at=20), "spec", extractor, out, workers=1, save_every=0)
    with pytest.raises(ValueError, match="delete it"):  # a partial of another run is refused
        featurize(source, "other", extractor, out, workers=1, save_every=0)


def test_extract_cli_errors(tmp_path, folder):
    with pytest.raises(SystemExit, match="does not exist"):
        main(
            [
                "--images",
                str(tmp_path / "nope"),
                "--features",
                "colorhist",
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )
    with pytest.raises(SystemExit, match="tfds:<name>/<split>"):
        main(
            [
                "--images",
                "tfds:acevedo",
                "--features",
                "colorhist",
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )
    with pytest.raises(SystemExit, match="encoder file not found"):
        main(
            [
                "--images",
                str(folder),
                "--encoder",
                str(tmp_path / "no.msgpack"),
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )


def test_encoder_input_size_is_the_default_resolution(tmp_path):
    """An encoder trained at one resolution records it; extract resizes to it unless told."""
    model = XCiT(**CONFIG)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    path = save_encoder(
        tmp_path / "e.msgpack",
        "custom",
        CONFIG,
        variables,
        (0.5,) * 3,
        (0.5,) * 3,
        "test",
        input_size=48,
    )
    enc = load_encoder(path)
    assert enc.input_size == 48
    image = np.zeros((60, 64, 3), np.uint8)
    assert read_size(enc).resize(image).shape == (48, 48, 3)
    assert read_size(enc, 32).resize(image).shape == (32, 32, 3)


def test_odd_input_size_reads_like_timm(timm_xcit, tmp_path):
    """An encoder exported with a side that is no multiple of its patch (37, patch 16) is read
    by extract without flags, and its features are timm XCiT's on the same resized pixels."""
    import torch

    from cellssl_jax.data.reading import resize_rgb
    from cellssl_jax.models.timm_mapping import timm_to_flax
    from cellssl_jax.models.xcit import XCIT_VARIANTS

    name = "xcit_nano_12_p16"
    model = timm_xcit(name, depth=2)
    variables = timm_to_flax({k: v.numpy() for k, v in model.state_dict().items()}, name, depth=2)
    enc = save_encoder(tmp_path / "odd.msgpack", name, dict(XCIT_VARIANTS[name], depth=2),
                       variables, (0.5,) * 3, (0.5,) * 3, "timm random", input_size=37)
    (tmp_path / "cells" / "a").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (50, 45, 3), dtype=np.uint8), np.zeros((30, 30, 3), np.uint8)]
    images[1][5:20, 8:25] = (200, 40, 90)
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / "cells" / "a" / f"{i}.png")
    stats = main(["--images", str(tmp_path / "cells"), "--encoder", str(enc),
                  "--out", str(tmp_path / "f"), "--batch_size", "2"])
    assert stats["shapes"] == [(37, 37)]
    pixels = np.stack([resize_rgb(img, (37, 37)) for img in images]) / 255.0
    with torch.no_grad():
        x = torch.from_numpy(((pixels - 0.5) / 0.5).transpose(0, 3, 1, 2)).float()
        ref = model.forward_features(x)[:, 0].numpy()
    feats = load_features(tmp_path / "f" / "features.npz").features
    assert np.abs(feats - ref).max() <= 1e-4
    assert np.abs(ref[0] - ref[1]).max() > 1e-2  # the two cells give different features


def test_native_size_reads_every_image_as_it_is(tiny_encoder, folder, tmp_path):
    """--image_size native: no resizing; images of one size are batched together."""
    out = tmp_path / "n"
    stats = main(["--images", str(folder), "--encoder", str(tiny_encoder), "--out", str(out),
                  "--batch_size", "4", "--image_size", "native"])
    assert stats["shapes"] == [(30, 34), (60, 64)]
    feats = load_features(out / "features.npz")
    assert feats.read_size == "native"
    enc = load_encoder(tiny_encoder)
    for i in (0, 1):  # 00.png is 60x64, 01.png 30x34
        image = np.asarray(Image.open(feats.paths[i]))
        np.testing.assert_allclose(feats.features[i], enc.embed(image[None])[0], atol=1e-5)
    for bad in ("0", "large"):
        with pytest.raises(SystemExit):
            main(["--images", str(folder), "--out", str(out), "--image_size", bad])
    with pytest.raises(ValueError, match="image size must be >= 1 or 'native'"):
        read_size(enc, "big")


def test_combined_features_are_the_kinds_side_by_side(folder, tiny_encoder, tmp_path):
    enc = load_encoder(tiny_encoder)
    feats = {}
    for kind in ("xcit", "colorhist", "cellshape", "xcit+colorhist", "xcit+colorhist+cellshape"):
        featurize(FolderSource(folder), "spec", make_featurizer(kind, enc, batch_size=4),
                  tmp_path / f"{kind}.npz", workers=1)
        feats[kind] = load_features(tmp_path / f"{kind}.npz")
    # saving is optional: the same features in memory, nothing written
    unsaved, stats = featurize(FolderSource(folder), "spec", make_featurizer("xcit", enc, 4),
                               workers=1)
    np.testing.assert_array_equal(unsaved.features, feats["xcit"].features)
    assert unsaved.paths == feats["xcit"].paths and stats["skipped"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{k}.npz" for k in feats] + [f"{k}.skipped.csv" for k in feats])
    both = feats["xcit+colorhist"]
    assert both.dim == 32 + 96 and both.encoder == "tiny+colorhist_3x32"
    np.testing.assert_allclose(both.features[:, :32], feats["xcit"].features, rtol=1e-6)
    np.testing.assert_array_equal(both.features[:, 32:], feats["colorhist"].features)
    assert both.paths == feats["xcit"].paths and both.skipped == feats["colorhist"].skipped
    assert feats["colorhist"].read_size == "" and both.read_size == "native/32"
    three = feats["xcit+colorhist+cellshape"]
    assert three.dim == 32 + 96 + 127 and three.encoder == "tiny+colorhist_3x32+cellshape_127"
    np.testing.assert_array_equal(three.features[:, :128], both.features)
    np.testing.assert_array_equal(three.features[:, 128:], feats["cellshape"].features)


def test_unknown_feature_kind_is_named():
    with pytest.raises(ValueError, match="unknown features 'colour'.*xcit\\+colorhist"):
        make_featurizer("colour")


def test_extract_tfds_split_matches_folder(tmp_path):
    from cellssl_jax.data.prepare import prepare

    lab = tmp_path / "lab"
    rng = np.random.default_rng(3)
    for name in ["blast", "lympho"]:
        (lab / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(lab / name / f"{i}.png")
    prepare("image_folder", lab, tmp_path / "data")
    spec = ["--features", "colorhist", "--data_dir", str(tmp_path / "data")]
    main(["--images", "tfds:image_folder/lab/all", "--out", str(tmp_path / "t")] + spec)
    main(["--images", str(lab), "--out", str(tmp_path / "f"), "--features", "colorhist"])
    tf = load_features(tmp_path / "t" / "features.npz")
    fo = load_features(tmp_path / "f" / "features.npz")
    assert tf.class_names == fo.class_names == ["blast", "lympho"]
    rows = zip(fo.paths, fo.features, fo.labels, strict=True)
    by_name = {p.split("lab/")[-1]: (x, y) for p, x, y in rows}
    assert len(tf.paths) == 6
    for p, x, y in zip(tf.paths, tf.features, tf.labels, strict=True):
        ref_x, ref_y = by_name[p.split("lab/")[-1]]
        np.testing.assert_allclose(x, ref_x)
        assert y == ref_y


def test_real_rgba_tiffs_and_jpegs(shared_data, tiny_encoder, tmp_path):
    """Matek blood's 400x400 RGBA TIFFs -> one 384x384 bucket; Acevedo JPEGs -> histograms."""
    out = tmp_path / "blood"
    stats = main(
        ["--images", str(shared_data / "matek_blood_tiff_dev"), "--out", str(out)]
        + ["--encoder", str(tiny_encoder), "--batch_size", "4"]
    )
    feats = load_features(out / "features.npz")
    assert stats["shapes"] == [(384, 384)] and feats.features.shape == (10, 32)
    assert feats.class_names == ["EOS", "LYT", "MON", "MYO", "NGS"]
    assert np.isfinite(feats.features).all() and feats.skipped == []
    lab = tmp_path / "pbc"
    for name in ["basophil", "platelet"]:
        (lab / name).mkdir(parents=True)
        for src in sorted((shared_data / "acevedo_pbc_dev" / name).glob("*.jpg"))[:5]:
            (lab / name / src.name).symlink_to(src)
    main(["--images", str(lab), "--features", "colorhist", "--out", str(tmp_path / "h")])
    hist = load_features(tmp_path / "h" / "features.npz")
    assert hist.features.shape == (10, 96) and hist.encoder == "colorhist_3x32"
    np.testing.assert_allclose(hist.features.reshape(10, 3, 32).sum(-1), 1.0, rtol=1e-5)


def test_an_encoder_with_a_crop_rule_reads_only_the_cell(tiny_encoder, tmp_path):
    """A file whose meta carries a crop rule is read through it with no flag: each row is the
    encoder's CLS of exactly the crop (atol 1e-5, as the whole-image path); an explicit
    --image_size reads the whole image, as before; the read size names the rule."""
    from cellssl_jax.encoder import rewrite_meta
    from cellssl_jax.featurize.crop import CropRule

    crop = {"rule": "stain", "window": 32, "margin": 0.3, "min_stain": 40}
    enc_path = rewrite_meta(tiny_encoder, tmp_path / "crop.msgpack", input_size=64, crop=crop)
    cells = tmp_path / "cells" / "a"
    cells.mkdir(parents=True)
    images = []
    for i, (r, c) in enumerate([(30, 34), (40, 25), (20, 45)]):
        image = np.full((72, 70, 3), (235, 200, 190), np.uint8)
        image[r - 8 : r + 8, c - 8 : c + 8] = (90, 50, 140)  # the nucleus, off the middle
        images.append(image)
        Image.fromarray(image).save(cells / f"{i}.png")
    stats = main(["--images", str(tmp_path / "cells"), "--encoder", str(enc_path),
                  "--out", str(tmp_path / "f"), "--batch_size", "2", "--no_cache"])
    assert stats["shapes"] == [(32, 32)]
    feats = load_features(tmp_path / "f" / "features.npz")
    rule = CropRule.from_meta(crop, 64)
    assert feats.read_size == "64/" + rule.name
    enc = load_encoder(enc_path)
    ref = enc.embed(np.stack([rule(image) for image in images]))
    np.testing.assert_allclose(feats.features, ref, atol=1e-5)
    whole = main(["--images", str(tmp_path / "cells"), "--encoder", str(enc_path),
                  "--out", str(tmp_path / "w"), "--image_size", "64", "--no_cache"])
    assert whole["shapes"] == [(64, 64)]
    assert load_features(tmp_path / "w" / "features.npz").read_size == "64"
