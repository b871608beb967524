"""TFDS builders on fake data in each release's layout, and on the real files when present."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cellssl_jax import evaluate, vocab
from cellssl_jax.data.builders import acevedo, matek_blood, matek_bm, raabin
from cellssl_jax.data.pipeline import host_batches
from cellssl_jax.data.prepare import main as prepare_main
from cellssl_jax.data.prepare import prepare
from cellssl_jax.data.reading import tfds_source
from cellssl_jax.fewshot.features import Features
from cellssl_jax.splits import file_id


def _jpeg(path: Path, seed: int, size=(12, 10), mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[0], size[1], channels), dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="TIFF" if mode == "RGBA" else "JPEG")
    return path


def _read_all(name: str, split: str, data_dir: Path) -> list[dict]:
    source = tfds_source(name, split, data_dir)
    return [source[i] for i in range(len(source))]


def _csv_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def fake_bm(tmp_path) -> Path:
    """Matek BM release layout: BM_cytomorphology_data/<CODE>/<range>/<CODE>_NNNNN.jpg."""
    root = tmp_path / "manual" / "BM_cytomorphology_data"
    counts = {"BLA": 10, "EOS": 7, "PMO": 3}
    seed = 0
    for code, n in counts.items():
        for k in range(n):
            seed += 1
            sub = "0001-1000" if k < 5 else "1001-2000"
            size = (251, 249) if (code, k) == ("EOS", 0) else (25, 25)
            _jpeg(root / code / sub / f"{code}_{k:05d}.jpg", seed, size)
    return tmp_path / "manual"


def test_matek_bm_counts_labels_splits_and_rebuild(fake_bm, tmp_path):
    builder = prepare("matek_bm", fake_bm, tmp_path / "d1")
    items = _read_all("matek_bm", "all", tmp_path / "d1")
    codes = Counter(matek_bm.CLASS_NAMES[it["label"]] for it in items)
    assert codes == {"BLA": 10, "EOS": 7, "PMO": 3}
    for it in items:  # label comes from the code in the folder and file name
        assert it["file_name"].split("/")[0] == matek_bm.CLASS_NAMES[it["label"]]
        assert it["image"].shape[-1] == 3 and it["image"].dtype == np.uint8
    odd = [it for it in items if it["file_name"].endswith("EOS/0001-1000/EOS_00000.jpg")]
    assert odd[0]["image"].shape == (251, 249, 3)  # native size kept
    train = Counter(
        matek_bm.CLASS_NAMES[it["label"]] for it in _read_all("matek_bm", "train", tmp_path / "d1")
    )
    test = Counter(
        matek_bm.CLASS_NAMES[it["label"]] for it in _read_all("matek_bm", "test", tmp_path / "d1")
    )
    assert train == {"BLA": 7, "EOS": 5, "PMO": 2} and test == {"BLA": 3, "EOS": 2, "PMO": 1}
    assert builder.info.metadata["split_seed"] == 20250101
    # A second build elsewhere assigns exactly the same cells to train.
    prepare("matek_bm", fake_bm, tmp_path / "d2")
    ids1 = {it["id"] for it in _read_all("matek_bm", "train", tmp_path / "d1")}
    ids2 = {it["id"] for it in _read_all("matek_bm", "train", tmp_path / "d2")}
    assert ids1 == ids2 and len(ids1) == 14


def test_matek_blood_rgba_tiff_becomes_rgb_and_prefix_is_stripped(tmp_path):
    manual = tmp_path / "AML-Cytomorphology_LMU"
    src = _jpeg(manual / "MYO" / "MYO___MYO_0001.tiff", 1, (40, 40), mode="RGBA")
    _jpeg(manual / "MYO" / "MYO_0002.tiff", 2, (40, 41), mode="RGBA")
    _jpeg(manual / "NGS" / "NGS_0001.tiff", 3, (40, 40), mode="RGBA")
    prepare("matek_blood", tmp_path, tmp_path / "data")
    items = {it["file_name"]: it for it in _read_all("matek_blood", "all", tmp_path / "data")}
    assert sorted(items) == ["MYO/MYO_0001.tiff", "MYO/MYO_0002.tiff", "NGS/NGS_0001.tiff"]
    first = items["MYO/MYO_0001.tiff"]
    assert first["label"] == matek_blood.CLASS_NAMES.index("MYO")
    np.testing.assert_array_equal(first["image"], np.asarray(Image.open(src))[..., :3])
    assert items["MYO/MYO_0002.tiff"]["image"].shape == (40, 41, 3)


def test_acevedo_subtypes_junk_and_duplicates(tmp_path):
    root = tmp_path / "PBC_dataset_normal_DIB"
    for k, prefix in enumerate(["SNE", "SNE", "BNE", "NEUTROPHIL"]):
        _jpeg(root / "neutrophil" / f"{prefix}_{k}.jpg", 10 + k)
    for k, prefix in enumerate(["PMY", "MY", "MMY", "IG"]):
        _jpeg(root / "ig" / f"{prefix}_{k}.jpg", 20 + k)
    dup = _jpeg(root / "platelet" / "PLATELET_1.jpg", 30)
    (root / "platelet" / "PLATELET_2.jpg").write_bytes(dup.read_bytes())
    (root / "neutrophil" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    builder = prepare("acevedo", tmp_path, tmp_path / "data")
    items = _read_all("acevedo", "all", tmp_path / "data")
    assert len(items) == 9  # 4 + 4 + 1 (duplicate dropped)
    source = builder.as_data_source(split="all")
    subtypes = Counter(source[i]["subtype"].decode() for i in range(len(source)))
    assert subtypes == {
        "SNE": 2,
        "BNE": 1,
        "NEUTROPHIL": 1,
        "PMY": 1,
        "MY": 1,
        "MMY": 1,
        "IG": 1,
        "PLATELET": 1,
    }
    out = Path(builder.data_dir)
    dups = _csv_rows(out / "duplicates.csv")
    assert [(d["file_name"], d["duplicate_of"]) for d in dups] == [
        ("platelet/PLATELET_2.jpg", "platelet/PLATELET_1.jpg")
    ]
    skipped = _csv_rows(out / "skipped.csv")
    assert [s["file_name"] for s in skipped] == ["neutrophil/.DS_Store"]


def test_raabin_keeps_official_splits(tmp_path):
    root = tmp_path / "Raabin-WBC"
    seed = 0  # distinct seeds: str hash() changes per process and once made two files equal
    for split, n in [("Train", 3), ("TestA", 2), ("TestB", 1)]:
        for cls in ["Basophil", "Neutrophil"]:
            for k in range(n):
                seed += 1
                _jpeg(root / split / cls / f"{cls}_{split}_{k}.jpg", seed)
    prepare("raabin", tmp_path, tmp_path / "data")
    sizes = {
        s: len(_read_all("raabin", s, tmp_path / "data"))
        for s in ["train", "test", "test_b", "all"]
    }
    assert sizes == {"train": 6, "test": 4, "test_b": 2, "all": 12}
    test = _read_all("raabin", "test", tmp_path / "data")
    assert all(it["file_name"].startswith("TestA/") for it in test)
    assert {raabin.CLASS_NAMES[it["label"]] for it in test} == {"Basophil", "Neutrophil"}


def test_image_folder_skips_exactly_corrupt_and_zero_byte(tmp_path):
    lab = tmp_path / "My Lab"
    for k in range(4):
        _jpeg(lab / "blast" / f"b{k}.jpg", k)
        _jpeg(lab / "lympho" / f"l{k}.png", 100 + k)
    good = (lab / "blast" / "b0.jpg").read_bytes()
    (lab / "blast" / "corrupt.jpg").write_bytes(good[: len(good) // 2])
    (lab / "lympho" / "empty.jpg").write_bytes(b"")
    builder = prepare("image_folder", lab, tmp_path / "data")
    assert builder.info.full_name == "image_folder/my_lab/1.0.0"
    skipped = _csv_rows(Path(builder.data_dir) / "skipped.csv")
    assert sorted(s["file_name"] for s in skipped) == ["blast/corrupt.jpg", "lympho/empty.jpg"]
    assert "zero-byte" in next(s["reason"] for s in skipped if "empty" in s["file_name"])
    source = tfds_source("image_folder/my_lab", "all", tmp_path / "data")
    assert source.class_names == ["blast", "lympho"] and len(source) == 8
    batch = next(
        host_batches(
            source,
            batch_size_per_device=4,
            image_size=(16, 16),
            seed=0,
            local_devices=2,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["image"].shape == (2, 4, 16, 16, 3)
    assert sorted(batch["label"].ravel().tolist()) == [0] * 4 + [1] * 4


def test_image_folder_flat_is_unlabelled(tmp_path):
    flat = tmp_path / "unlabelled"
    for k in range(5):
        _jpeg(flat / f"c{k}.jpg", k)
    prepare("image_folder", flat, tmp_path / "data")
    items = _read_all("image_folder/unlabelled", "all", tmp_path / "data")
    assert len(items) == 5 and {it["label"] for it in items} == {-1}


def test_missing_or_wrong_manual_dir_names_the_layout(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a folder"):
        prepare_main(
            ["matek_bm", "--manual_dir", str(tmp_path / "nope"), "--data_dir", str(tmp_path / "d")]
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="BM_cytomorphology_data"):
        prepare_main(
            ["matek_bm", "--manual_dir", str(tmp_path / "empty"), "--data_dir", str(tmp_path / "d")]
        )
    _jpeg(tmp_path / "wrong" / "XYZ" / "a.jpg", 0)
    _jpeg(tmp_path / "wrong" / "BLA" / "a.jpg", 0)
    with pytest.raises(SystemExit, match="unknown class folders"):
        prepare_main(
            ["matek_bm", "--manual_dir", str(tmp_path / "wrong"), "--data_dir", str(tmp_path / "d")]
        )


def test_builders_and_evaluate_share_one_vocabulary_and_one_split(fake_bm, tmp_path):
    for module in (acevedo, matek_bm, matek_blood, raabin):
        assert module.CLASS_NAMES == tuple(vocab.DATASETS[module.__name__.rsplit(".", 1)[1]])
    builder = prepare("matek_bm", fake_bm, tmp_path / "d")
    assert builder.info.features["label"].names == list(vocab.MATEK_BM)
    assert "classes. Labels: 0=ABE, 1=ART, 2=BAS," in builder.info.description
    assert builder.info.description.endswith(", 20=PMO")
    test_ids = {it["id"] for it in _read_all("matek_bm", "test", tmp_path / "d")}
    # The same folder as a features file numbers its 3 classes 0..2 (the builder: 3, 5, 20).
    paths = sorted(fake_bm.rglob("*.jpg"))
    names = sorted({p.parts[-3] for p in paths})
    labels = np.array([names.index(p.parts[-3]) for p in paths])
    feats = Features(np.zeros((len(paths), 2), np.float32), labels, names, list(map(str, paths)))
    assert {file_id(p) for p in evaluate._part(feats, 0.7, 1).paths} == test_ids
    paths[0].unlink()
    with pytest.raises(FileNotFoundError, match="1 of 20 are missing"):
        evaluate._part(feats, 0.7, 1)


def test_real_matek_blood_tiffs(shared_data, tmp_path):
    prepare("matek_blood", shared_data / "matek_blood_tiff_dev", tmp_path / "data")
    items = _read_all("matek_blood", "all", tmp_path / "data")
    assert Counter(matek_blood.CLASS_NAMES[it["label"]] for it in items) == {
        c: 2 for c in ["EOS", "LYT", "MON", "MYO", "NGS"]
    }
    for it in items:
        assert it["image"].shape == (400, 400, 3)
        assert "___" not in it["file_name"]
    sample = next(iter((shared_data / "matek_blood_tiff_dev" / "EOS").glob("*.tiff")))
    want = np.asarray(Image.open(sample).convert("RGB"))
    got = [it["image"] for it in items if it["file_name"] == "EOS/" + sample.name.split("___")[1]]
    np.testing.assert_array_equal(got[0], want)


def test_real_acevedo_counts_splits_subtypes(shared_data, tmp_path):
    manual = shared_data / "acevedo_pbc_dev"
    builder = prepare("acevedo", manual, tmp_path / "data")
    folder_counts = {c: len(list((manual / c).glob("*.jpg"))) for c in acevedo.CLASS_NAMES}
    train = builder.info.splits["train"].num_examples
    test = builder.info.splits["test"].num_examples
    assert train + test == sum(folder_counts.values()) == 5078
    skip_image = {"image": tfds.decode.SkipDecoding()}
    for split in ["train", "test"]:
        src = builder.as_data_source(split=split, decoders=skip_image)
        got = Counter(acevedo.CLASS_NAMES[src[i]["label"]] for i in range(len(src)))
        for c, n in folder_counts.items():
            want = (
                int(np.floor(0.7 * n + 0.5))
                if split == "train"
                else n - int(np.floor(0.7 * n + 0.5))
            )
            assert got[c] == want, (split, c)
    src = builder.as_data_source(split="all", decoders=skip_image)
    ig = Counter(
        src[i]["subtype"].decode()
        for i in range(len(src))
        if src[i]["label"] == acevedo.CLASS_NAMES.index("ig")
    )
    assert ig == {"IG": 40, "MMY": 291, "MY": 351, "PMY": 160}
    img = io.BytesIO(src[0]["image"])
    assert Image.open(img).format == "JPEG"  # original bytes stored, not re-encoded


def test_real_matek_bm_same_split_twice(shared_data, tmp_path):
    manual = shared_data / "matek_bm_dev"
    ids = []
    for d in ["d1", "d2"]:
        builder = prepare("matek_bm", manual, tmp_path / d)
        assert builder.info.splits["train"].num_examples == 7 * 210
        assert builder.info.splits["test"].num_examples == 7 * 90
        src = builder.as_data_source(
            split="train",
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        ids.append(sorted(src[i]["id"] for i in range(len(src))))
    assert ids[0] == ids[1]
