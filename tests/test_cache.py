"""Features cache: rows per image, shared by the jobs, so a second run encodes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cellssl_jax import cache, classify, extract, select
from cellssl_jax.encoder import Encoder
from cellssl_jax.fewshot.features import load_features

SAMPLE = Path(classify.__file__).parent / "assets" / "sample"


@pytest.fixture()
def forwards(monkeypatch) -> list[int]:
    """Images per encoder forward (batches are padded: each entry is one call's batch)."""
    calls: list[int] = []
    embed = Encoder.embed

    def counted(self, images):
        calls.append(len(images))
        return embed(self, images)

    monkeypatch.setattr(Encoder, "embed", counted)
    return calls


@pytest.fixture()
def lab(tmp_path: Path) -> tuple[Path, Path]:
    """3 classes x 5 labelled cells and 6 unlabelled ones, from the bundled sample."""
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "unlabelled"
    unlabelled.mkdir()
    for c in ("eosinophil", "lymphocyte", "platelet"):
        (labelled / c).mkdir(parents=True)
        files = sorted((SAMPLE / "labelled" / c).iterdir())
        for f in files[:5]:
            shutil.copy(f, labelled / c / f.name)
        for f in files[5:7]:
            shutil.copy(f, unlabelled / f"{c}_{f.name}")
    return labelled, unlabelled


def test_table_round_trip_merge_and_bad_shards(tmp_path):
    a = cache.FeatureTable(tmp_path, "xcit", "ab" * 32, "native/32", 3)
    assert a.folder.name == "xcit-abababababababab-native-32" and a.load() == 0
    assert a.flush() is None  # nothing new, no file
    for i in range(cache.MERGE_ABOVE + 1):  # one shard per flush
        a.put(f"k{i}", np.full(3, i))
        a.flush()
    (a.folder / "broken.npz").write_bytes(b"not a zip")
    b = cache.FeatureTable(tmp_path, "xcit", "ab" * 32, "native/32", 3)
    assert b.load() == cache.MERGE_ABOVE + 1  # the broken shard is ignored, not fatal
    np.testing.assert_array_equal(b.get("k7"), np.full(3, 7.0))
    assert len(list(b.folder.glob("*.npz"))) == 1  # merged into one shard
    c = cache.FeatureTable(tmp_path, "xcit", "ab" * 32, "native/32", 3)
    assert c.load() == cache.MERGE_ABOVE + 1 and c.get("absent") is None
    described = json.loads((a.folder / "table.json").read_text())
    assert described["encoder_sha256"] == "ab" * 32 and described["read_size"] == "native/32"
    other = cache.FeatureTable(tmp_path, "xcit", "ab" * 32, "224", 3)  # another read size
    assert other.load() == 0


def test_root_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    assert cache.cache_root() == tmp_path and cache.cache_root(False) is None
    monkeypatch.delenv(cache.ENV)
    assert cache.cache_root() == Path.home() / ".cache" / "cellssl_jax" / "features"


def test_pixel_key_follows_pixels_and_shape():
    image = np.zeros((4, 6, 3), np.uint8)
    assert cache.pixel_key(image) == cache.pixel_key(image.copy())
    assert cache.pixel_key(image) != cache.pixel_key(image.reshape(6, 4, 3))
    changed = image.copy()
    changed[0, 0, 0] = 1
    assert cache.pixel_key(image) != cache.pixel_key(changed)


def classify_cli(lab, out: Path, encoder: Path, *extra: str) -> dict:
    labelled, unlabelled = lab
    return classify.main(["--labelled", str(labelled), "--unlabelled", str(unlabelled),
                          "--out", str(out), "--encoder", str(encoder), *extra])


def test_second_classify_with_another_classifier_does_no_encoder_forward(
    lab, tmp_path, tiny_encoder, forwards, features_cache
):
    first = classify_cli(lab, tmp_path / "svm", tiny_encoder)
    assert forwards and first["encoded_cells"] == 21 and first["cached_cells"] == 0
    forwards.clear()
    second = classify_cli(lab, tmp_path / "lr", tiny_encoder, "--classifier", "lr")
    assert forwards == [] and second["encoded_cells"] == 0 and second["cached_cells"] == 21
    for name in ("labelled_features.npz", "unlabelled_features.npz"):
        a, b = load_features(tmp_path / "svm" / name), load_features(tmp_path / "lr" / name)
        np.testing.assert_array_equal(a.features, b.features)
        assert a.paths == b.paths
    assert len(list(features_cache.glob("xcit-*/*.npz"))) == 2  # one shard per folder

    # the encoder alone reuses the same rows; the pair's first columns are exactly them
    third = classify_cli(lab, tmp_path / "xcit", tiny_encoder, "--features", "xcit")
    assert forwards == [] and third["cached_cells"] == 21
    pair = load_features(tmp_path / "svm" / "labelled_features.npz")
    alone = load_features(tmp_path / "xcit" / "labelled_features.npz")
    np.testing.assert_array_equal(pair.features[:, : alone.dim], alone.features)

    # new cells in the folder: only they are encoded
    for f in sorted((SAMPLE / "labelled" / "neutrophil").iterdir())[:2]:
        shutil.copy(f, lab[1] / f"new_{f.name}")
    grown = classify_cli(lab, tmp_path / "grown", tiny_encoder)
    assert grown["encoded_cells"] == 2 and grown["cached_cells"] == 21 and len(forwards) == 1

    forwards.clear()
    bypass = classify_cli(lab, tmp_path / "bypass", tiny_encoder, "--no_cache")
    assert forwards and bypass["encoded_cells"] == 23 and bypass["cached_cells"] == 0


def test_extract_select_and_read_size_share_the_cache_correctly(
    lab, tmp_path, tiny_encoder, forwards
):
    _, unlabelled = lab
    common = ["--images", str(unlabelled), "--encoder", str(tiny_encoder)]
    first = extract.main([*common, "--features", "xcit", "--out", str(tmp_path / "a")])
    assert first["encoded"] == 6 and forwards
    forwards.clear()
    select.main(["--images", str(unlabelled), "--encoder", str(tiny_encoder),
                 "--budget", "3", "--out", str(tmp_path / "select")])
    assert forwards == []  # select after extract: the pair's encoder half is cached
    fresh = extract.main([*common, "--features", "xcit", "--out", str(tmp_path / "b"),
                          "--no_cache"])
    assert fresh["encoded"] == 6 and fresh["from_cache"] == 0
    np.testing.assert_allclose(load_features(tmp_path / "a" / "features.npz").features,
                               load_features(tmp_path / "b" / "features.npz").features, atol=1e-5)
    other = extract.main([*common, "--features", "xcit", "--image_size", "64",
                          "--out", str(tmp_path / "c")])
    assert other["encoded"] == 6  # another read size is another table
    assert load_features(tmp_path / "c" / "features.npz").read_size == "64"


def test_second_job_takes_the_compiled_encoder_from_the_compilation_cache(tmp_path):
    """JAX's compilation cache under the features cache root, and beside it the encoder's
    exported (traced + lowered) function: the first run writes both, a run on other cells reads
    both (no new entry, a compilation cache hit, the model not traced);
    $CELLSSL_COMPILATION_CACHE=0 or --no_cache: neither."""
    import os
    import subprocess
    import sys

    def extract_run(cells: str, out: str, env: dict, *flags: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "cellssl_jax.extract", "--images",
             str(SAMPLE / "labelled" / cells), "--out", str(tmp_path / out), "--features",
             "xcit", *flags],
            env={**os.environ, "JAX_LOG_COMPILES": "1", **env}, check=True,
            capture_output=True, text=True)
        return proc.stderr

    root = tmp_path / "cache"
    compiled, exported = root / cache.COMPILATION_FOLDER, root / cache.EXPORT_FOLDER
    log = extract_run("eosinophil", "a", {cache.ENV: str(root)})
    entries, functions = set(compiled.iterdir()), set(exported.iterdir())
    assert entries  # the encoder's executable, at least
    assert len(functions) == 1 and "saved to the export cache" in log  # one batch shape
    log = extract_run("lymphocyte", "b", {cache.ENV: str(root)})
    assert set(compiled.iterdir()) == entries  # same shapes: nothing compiled anew
    assert set(exported.iterdir()) == functions
    assert "from the export cache" in log and "Persistent compilation cache hit" in log
    assert "Finished tracing run" not in log  # the model itself was not traced again
    off = tmp_path / "off"
    extract_run("platelet", "c", {cache.ENV: str(off), cache.COMPILATION_ENV: "0"})
    assert off.is_dir() and not (off / cache.COMPILATION_FOLDER).exists()  # features only
    assert not (off / cache.EXPORT_FOLDER).exists()
    extract_run("lymphocyte", "d", {cache.ENV: str(tmp_path / "none")}, "--no_cache")
    assert not (tmp_path / "none").exists()
    # the exported function computes the same features as the model traced afresh
    np.testing.assert_allclose(load_features(tmp_path / "b" / "features.npz").features,
                               load_features(tmp_path / "d" / "features.npz").features,
                               atol=1e-6)
