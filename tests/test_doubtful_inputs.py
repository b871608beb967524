"""Doubtful but readable images (greyscale, transparent, far too large) are kept, warned about
once per kind and listed with the reason; unreadable ones are listed with the reason too."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cellssl_jax import classify
from cellssl_jax.data.images import doubts, read_image
from cellssl_jax.data.reading import FolderSource
from cellssl_jax.encoder import load_encoder
from cellssl_jax.featurize import featurize, make_featurizer

SAMPLE = Path(classify.__file__).parent / "assets" / "sample"


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def cell(name: str = "neutrophil", k: int = 0) -> np.ndarray:
    return np.asarray(Image.open(sorted((SAMPLE / "labelled" / name).iterdir())[k]).convert("RGB"))


def doubtful_folder(root: Path) -> Path:
    """Real cells: 2 plain, 2 greyscale (L mode and grey RGB JPEG), 1 RGBA with transparent
    corners, 1 opaque RGBA (fine), 1 far larger than a 128-pixel read, 1 unreadable file."""
    root.mkdir()
    Image.fromarray(cell(k=0)).save(root / "plain_0.png")
    Image.fromarray(cell(k=1)).save(root / "plain_1.png")
    Image.fromarray(cell(k=2)).convert("L").save(root / "grey_l.png")
    Image.fromarray(cell(k=3)).convert("L").convert("RGB").save(root / "grey_rgb.jpg")
    rgba = np.dstack([cell(k=4), np.full(cell(k=4).shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(root / "opaque_rgba.png")
    rgba[:60, :60, 3] = 0
    Image.fromarray(rgba).save(root / "transparent.png")
    Image.fromarray(cell(k=5)).resize((420, 400)).save(root / "large.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def test_doubts_name_each_kind():
    rgb = cell()
    assert doubts(rgb) == []
    grey = np.repeat(rgb.mean(-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    assert [k for k, _ in doubts(grey)] == ["greyscale"]
    assert [k for k, _ in doubts(rgb, transparent=0.25)] == ["transparent"]
    assert "25.0%" in doubts(rgb, transparent=0.25)[0][1]
    assert [k for k, _ in doubts(rgb, read_side=100)] == ["large"]  # 363 > 3 x 100
    assert doubts(rgb, read_side=352) == []  # the bundled encoder's read of a PBC cell


def test_transparency_is_measured_on_decoding(tmp_path):
    root = doubtful_folder(tmp_path / "cells")
    assert read_image(root / "opaque_rgba.png")[1] == 0.0
    image, transparent = read_image(root / "transparent.png")
    assert image.shape[-1] == 3 and transparent == (60 * 60) / (image.shape[0] * image.shape[1])


def test_extract_warns_once_per_kind_and_lists_them(tmp_path, tiny_encoder, caplog):
    root = doubtful_folder(tmp_path / "cells")
    extractor = make_featurizer("xcit+colorhist", load_encoder(tiny_encoder), image_size=128)
    out = tmp_path / "f.npz"
    with caplog.at_level(logging.WARNING, logger="cellssl_jax"):
        _, stats = featurize(FolderSource(root), str(root), extractor, out, workers=2)
    assert stats["images"] == 7 and stats["skipped"] == 1  # doubtful images are kept
    flagged = {Path(r["path"]).name: r["reason"] for r in rows(tmp_path / "f.flagged.csv")}
    assert set(flagged) == {"grey_l.png", "grey_rgb.jpg", "transparent.png", "large.png"}
    assert flagged["grey_l.png"].startswith("greyscale")
    assert flagged["transparent.png"].startswith("alpha channel")
    assert "420x400" in flagged["large.png"]
    kept = [r.getMessage() for r in caplog.records if "doubtful" in r.getMessage()]
    assert len(kept) == 3  # one warning per kind, not per image
    (grey,) = [m for m in kept if "greyscale" in m]
    assert grey.startswith("2 greyscale image(s)") and "f.flagged.csv" in grey
    skipped = rows(tmp_path / "f.skipped.csv")
    assert skipped[0]["path"].endswith("broken.jpg") and "not an image" in skipped[0]["reason"]


def test_classify_lists_skipped_and_flagged_with_reasons(tmp_path, capsys):
    labelled = tmp_path / "labelled"
    for c in ("eosinophil", "lymphocyte", "platelet"):
        (labelled / c).mkdir(parents=True)
        for f in sorted((SAMPLE / "labelled" / c).iterdir())[:6]:
            shutil.copy(f, labelled / c / f.name)
    unlabelled = doubtful_folder(tmp_path / "cells")
    out = tmp_path / "out"
    summary = classify.main(["--labelled", str(labelled), "--unlabelled", str(unlabelled),
                             "--out", str(out), "--features", "colorhist"])
    skipped = rows(out / "skipped.csv")
    assert list(skipped[0]) == ["file", "reason"] and "not an image" in skipped[0]["reason"]
    flagged = rows(out / "flagged.csv")
    assert list(flagged[0]) == ["file", "reason"]
    # colour only: no read size, so "large" is not a doubt here
    assert {Path(r["file"]).name for r in flagged} == {
        "grey_l.png", "grey_rgb.jpg", "transparent.png"
    }
    assert len(summary["flagged"]) == 3 and summary["classified_cells"] == 7
    assert "flagged 3 doubtful images" in capsys.readouterr().out


def test_cell_shape_flags_cells_without_a_nucleus(tmp_path, caplog):
    """A cell whose stain is not found (here an image with no blue at all: a pale pink field)
    keeps its row, zeros in its cell-shape columns, and is flagged "unstained" with the reason;
    real cells are not."""
    root = tmp_path / "cells"
    root.mkdir()
    Image.fromarray(cell(k=0)).save(root / "plain_0.png")
    Image.fromarray(cell("lymphocyte", 0)).save(root / "plain_1.png")
    pink = np.zeros((300, 300, 3), np.uint8) + np.array([235, 200, 205], np.uint8)
    Image.fromarray(pink).save(root / "pink.png")
    extractor = make_featurizer("colorhist+cellshape")
    out = tmp_path / "f.npz"
    with caplog.at_level(logging.WARNING, logger="cellssl_jax"):
        features, _ = featurize(FolderSource(root), str(root), extractor, out, workers=2)
    flagged = {Path(r["path"]).name: r["reason"] for r in rows(tmp_path / "f.flagged.csv")}
    assert set(flagged) == {"pink.png"} and flagged["pink.png"].startswith("no stained nucleus")
    shape = features.features[:, -extractor.parts[1].dim:]
    by_name = {Path(p).name: row for p, row in zip(features.paths, shape, strict=True)}
    assert not by_name["pink.png"].any() and by_name["plain_0.png"].any()
    assert any(r.getMessage().startswith("1 unstained image(s)") for r in caplog.records)
