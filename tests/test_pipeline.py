"""Input pipeline (contract 4): shapes, labels, sharding, determinism, resume, 8 devices."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellssl_jax.data.pipeline import FolderSource, host_batches, resize_rgb

REPO = Path(__file__).resolve().parents[1]


def _index_source(n: int) -> list[dict]:
    """Item i: a 3x5 image filled with i % 256, label i (lets tests see which items came)."""
    return [{"image": np.full((3, 5, 3), i % 256, np.uint8), "label": i} for i in range(n)]


def _labels(batches) -> list[np.ndarray]:
    return [b["label"].ravel().copy() for b in batches]


@pytest.fixture
def cell_folder(tmp_path) -> Path:
    """3 classes x 5 images of odd sizes; every pixel of class c is 40*(c+1)."""
    for c, name in enumerate(["BLA", "EOS", "LYT"]):
        for k in range(5):
            size = (17 + k, 23 - k)  # odd, non-square sizes survive the resize
            img = np.full((*size, 3), 40 * (c + 1), np.uint8)
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(img).save(tmp_path / name / f"{name}_{k}.png")
    return tmp_path


def test_folder_batches_shape_and_labels(cell_folder):
    source = FolderSource(cell_folder)
    assert len(source) == 15 and source.class_names == ["BLA", "EOS", "LYT"]
    batches = list(
        host_batches(
            source,
            batch_size_per_device=3,
            image_size=(8, 10),
            seed=0,
            local_devices=2,
            process_index=0,
            process_count=1,
            num_epochs=1,
            workers=2,
        )
    )
    assert len(batches) == 2  # 15 // 6, remainder dropped
    for b in batches:
        assert b["image"].shape == (2, 3, 8, 10, 3) and b["image"].dtype == np.uint8
        assert b["label"].shape == (2, 3) and b["mask"].all()
        # The pixel value encodes the class: image and label travelled together.
        np.testing.assert_array_equal(b["image"][..., 0].mean(axis=(-1, -2)), 40 * (b["label"] + 1))


def test_one_epoch_is_a_permutation_and_epochs_differ():
    source = _index_source(24)
    run = _labels(
        host_batches(
            source,
            batch_size_per_device=4,
            image_size=(3, 5),
            seed=7,
            local_devices=2,
            process_index=0,
            process_count=1,
            num_epochs=2,
        )
    )
    assert len(run) == 6
    first, second = np.concatenate(run[:3]), np.concatenate(run[3:])
    assert sorted(first) == list(range(24)) and sorted(second) == list(range(24))
    assert not np.array_equal(first, second)


def test_deterministic_for_seed_and_differs_across_seeds():
    source = _index_source(40)
    kw = dict(
        batch_size_per_device=5,
        image_size=(3, 5),
        local_devices=1,
        process_index=0,
        process_count=1,
        num_epochs=2,
    )
    a = _labels(host_batches(source, seed=3, **kw))
    b = _labels(host_batches(source, seed=3, workers=1, prefetch=0, **kw))
    c = _labels(host_batches(source, seed=4, **kw))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_start_step_resumes_exactly():
    source = _index_source(30)
    kw = dict(
        batch_size_per_device=4,
        image_size=(3, 5),
        seed=1,
        local_devices=1,
        process_index=0,
        process_count=1,
        num_epochs=3,
    )
    full = _labels(host_batches(source, **kw))
    resumed = _labels(host_batches(source, start_step=8, **kw))
    assert len(full) == 21 and len(resumed) == 13  # 7 steps/epoch; resume mid-epoch 2
    assert all(np.array_equal(x, y) for x, y in zip(full[8:], resumed, strict=True))


def test_hosts_read_disjoint_shards_of_each_global_step():
    source = _index_source(48)
    kw = dict(
        batch_size_per_device=3,
        image_size=(3, 5),
        seed=5,
        local_devices=2,
        process_count=4,
        num_epochs=1,
    )
    per_host = [_labels(host_batches(source, process_index=p, **kw)) for p in range(4)]
    assert [len(h) for h in per_host] == [2, 2, 2, 2]  # 48 / (4 hosts x 2 devices x 3)
    seen = np.concatenate([np.concatenate(h) for h in per_host])
    assert sorted(seen) == list(range(48))
    # Same global step on one host count: identical whatever other hosts do.
    again = _labels(host_batches(source, process_index=2, **kw))
    assert all(np.array_equal(x, y) for x, y in zip(per_host[2], again, strict=True))


def test_no_drop_remainder_pads_and_masks():
    source = _index_source(10)
    batches = list(
        host_batches(
            source,
            batch_size_per_device=4,
            image_size=(3, 5),
            seed=0,
            local_devices=1,
            process_index=0,
            process_count=1,
            num_epochs=1,
            shuffle=False,
            drop_remainder=False,
        )
    )
    labels = np.concatenate([b["label"].ravel() for b in batches])
    mask = np.concatenate([b["mask"].ravel() for b in batches])
    assert labels[mask].tolist() == list(range(10))
    assert mask.sum() == 10 and (labels[~mask] == -1).all()
    assert (batches[-1]["image"][0, 2:] == 0).all()


def test_errors_for_bad_arguments():
    with pytest.raises(ValueError, match="global batch"):
        next(
            host_batches(
                _index_source(3),
                batch_size_per_device=4,
                image_size=(3, 5),
                seed=0,
                local_devices=1,
                process_index=0,
                process_count=1,
            )
        )
    with pytest.raises(ValueError, match="process_index"):
        next(
            host_batches(
                _index_source(3),
                batch_size_per_device=1,
                image_size=(3, 5),
                seed=0,
                local_devices=1,
                process_index=2,
                process_count=2,
            )
        )


def test_resize_keeps_dtype_and_identity():
    img = np.random.default_rng(0).integers(0, 256, (363, 360, 3), dtype=np.uint8)
    assert resize_rgb(img, (363, 360)) is img
    out = resize_rgb(img, (224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_eight_fake_cpu_devices(cell_folder):
    """Device counts come from JAX when not given; run where XLA sees 8 CPU devices."""
    script = textwrap.dedent(f"""
        import jax, numpy as np
        from cellssl_jax.data.pipeline import FolderSource, host_batches
        assert jax.local_device_count() == 8, jax.devices()
        src = FolderSource({str(cell_folder)!r})
        batches = list(host_batches(src, batch_size_per_device=1, image_size=(16, 16),
                                    seed=0, num_epochs=1))
        assert len(batches) == 1, len(batches)
        b = batches[0]
        assert b["image"].shape == (8, 1, 16, 16, 3), b["image"].shape
        means = jax.pmap(lambda x: x[..., 0].astype(np.float32).mean())(b["image"])
        np.testing.assert_array_equal(np.asarray(means), 40 * (b["label"][:, 0] + 1))
        print("OK8")
    """)
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "OK8" in out.stdout, out.stderr[-2000:]


def test_folder_source_check_drops_unreadable(cell_folder):
    (cell_folder / "EOS" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (cell_folder / "EOS" / "empty.jpg").write_bytes(b"")
    assert len(FolderSource(cell_folder)) == 17  # unchecked: listed, would fail on decode
    source = FolderSource(cell_folder, check=True)
    assert len(source) == 15 and len(source.folder.labels) == 15
    assert sorted(p.name for p, _ in source.skipped) == ["broken.png", "empty.jpg"]
    assert all(source[i]["image"].ndim == 3 for i in range(len(source)))
