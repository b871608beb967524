"""Image decoding and folder scanning (contract 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellssl_jax.data.images import (
    IMAGE_SUFFIXES,
    UnreadableImage,
    decode_rgb,
    read_rgb,
    relative_name,
    scan_folder,
)


def _save(path: Path, mode: str = "RGB", size=(13, 7), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if mode == "RGBA":
        arr = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
        arr[..., 3] = 255
    elif mode == "L":
        arr = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    else:
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr, mode=None).save(path, format=fmt)
    return path


def test_rgb_png_roundtrip_exact(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (5, 9, 3)
    np.testing.assert_array_equal(out, arr)


def test_rgba_tiff_drops_alpha(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (6, 4, 4), dtype=np.uint8)
    arr[..., 3] = 255
    Image.fromarray(arr).save(tmp_path / "x.tiff")
    out = read_rgb(tmp_path / "x.tiff")
    assert out.shape == (6, 4, 3)
    np.testing.assert_array_equal(out, arr[..., :3])


def test_grayscale_and_palette_become_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 1], gray)
    pal = Image.fromarray(np.full((3, 4, 3), [10, 200, 30], np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE
    )
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png")
    out = read_rgb(tmp_path / "p.png")
    assert out.shape == (3, 4, 3) and tuple(out[0, 0]) == (10, 200, 30)


def test_16bit_grayscale_is_scaled(tmp_path):
    wide = np.full((2, 3), 65535, dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    out = read_rgb(tmp_path / "w.png")
    assert out.shape == (2, 3, 3) and out.max() == 255


def test_corrupt_inputs_raise_unreadable(tmp_path):
    good = _save(tmp_path / "good.jpg", size=(64, 64))
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    reasons = {}
    for name in ["trunc.jpg", "zero.jpg", "text.jpg", "missing.jpg"]:
        with pytest.raises(UnreadableImage) as info:
            read_rgb(tmp_path / name)
        assert info.value.path == str(tmp_path / name)
        reasons[name] = info.value.reason
    assert "zero-byte" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["trunc.jpg"]
    with pytest.raises(UnreadableImage):
        decode_rgb(b"", "mem")


def test_scan_labelled_nested_hidden(tmp_path):
    root = tmp_path / "cells"
    _save(root / "BLA" / "0001-1000" / "BLA_00001.jpg")
    _save(root / "BLA" / "1001-2000" / "BLA_01001.JPG")
    _save(root / "EOS" / "EOS_1.png")
    _save(root / "EOS" / ".DS_Store.png")  # hidden: ignored
    _save(root / ".hidden" / "x.jpg")  # hidden class folder: ignored
    (root / "EOS" / "notes.txt").write_text("ignored: not an image suffix")
    (root / "EMPTY").mkdir()
    folder = scan_folder(root)
    assert folder.class_names == ["BLA", "EOS"]
    assert [p.name for p in folder.paths] == ["BLA_00001.jpg", "BLA_01001.JPG", "EOS_1.png"]
    assert folder.labels.tolist() == [0, 0, 1]
    assert folder.labels.dtype == np.int64


def test_scan_flat_is_unlabelled(tmp_path):
    _save(tmp_path / "b.png")
    _save(tmp_path / "a.tif", mode="RGBA")
    folder = scan_folder(tmp_path)
    assert folder.class_names == []
    assert [p.name for p in folder.paths] == ["a.tif", "b.png"]
    assert folder.labels.tolist() == [-1, -1]


def test_relative_name_inside_and_outside_the_folder(tmp_path):
    (tmp_path / "cells" / "a").mkdir(parents=True)
    inside = tmp_path / "cells" / "a" / ".." / "a" / "x.png"
    assert relative_name(inside, tmp_path / "cells") == str(Path("a") / "x.png")
    assert relative_name(str(tmp_path / "y.png"), tmp_path / "cells") == str(tmp_path / "y.png")


def test_scan_errors_name_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="class name"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        scan_folder(tmp_path / "empty")
    _save(tmp_path / "mixed" / "A" / "a.png")
    _save(tmp_path / "mixed" / "loose.png")
    with pytest.raises(ValueError, match="mixes"):
        scan_folder(tmp_path / "mixed")


def test_suffixes_cover_dataset_formats():
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"} <= IMAGE_SUFFIXES


def test_real_folders(shared_data):
    pbc = scan_folder(shared_data / "acevedo_pbc_dev")
    assert len(pbc) == 5078 and len(pbc.class_names) == 8
    assert np.bincount(pbc.labels)[pbc.class_names.index("ig")] == 842
    bm = scan_folder(shared_data / "matek_bm_dev")
    assert bm.class_names == ["BLA", "EOS", "LYT", "MON", "NGS", "NIF", "PMO"]
    assert np.bincount(bm.labels).tolist() == [300] * 7
    tiffs = scan_folder(shared_data / "matek_blood_tiff_dev")
    for path in tiffs.paths:
        img = read_rgb(path)
        assert img.shape == (400, 400, 3) and img.dtype == np.uint8
    assert read_rgb(pbc.paths[0]).shape[-1] == 3
