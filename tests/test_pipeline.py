"""Input pipeline on grain (contract 4): shapes, labels, sharding, determinism, resume (start
step and iterator state), 8 devices, the unreadable-image policy, the extraction reader."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_on_cpu_devices
from PIL import Image

from cellssl_jax.data.pipeline import epoch_order, host_batches
from cellssl_jax.data.reading import FolderSource, read_images, resize_rgb

REPO = Path(__file__).resolve().parents[1]


def _index_source(n: int) -> list[dict]:
    """Item i: a 3x5 image filled with i % 256, label i (lets tests see which items came)."""
    return [{"image": np.full((3, 5, 3), i % 256, np.uint8), "label": i} for i in range(n)]


def _labels(batches) -> list[np.ndarray]:
    return [b["label"].ravel().copy() for b in batches]


def _batches(source, **kw):
    """host_batches on one host with one device, 3 x 5 images, seed 0, one epoch, unless told."""
    defaults = dict(image_size=(3, 5), seed=0, local_devices=1, process_index=0,
                    process_count=1, num_epochs=1)
    return host_batches(source, **{**defaults, **kw})


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
        _batches(source, batch_size_per_device=3, image_size=(8, 10), local_devices=2, workers=2)
    )
    assert len(batches) == 2  # 15 // 6, remainder dropped
    for b in batches:
        assert b["image"].shape == (2, 3, 8, 10, 3) and b["image"].dtype == np.uint8
        assert b["label"].shape == (2, 3)
        # The pixel value encodes the class: image and label travelled together.
        np.testing.assert_array_equal(b["image"][..., 0].mean(axis=(-1, -2)), 40 * (b["label"] + 1))


def test_one_epoch_is_a_permutation_and_epochs_differ():
    source = _index_source(24)
    run = _labels(_batches(source, batch_size_per_device=4, seed=7, local_devices=2,
                           num_epochs=2))
    assert len(run) == 6
    first, second = np.concatenate(run[:3]), np.concatenate(run[3:])
    assert sorted(first) == list(range(24)) and sorted(second) == list(range(24))
    assert not np.array_equal(first, second)


def test_deterministic_for_seed_and_differs_across_seeds():
    source = _index_source(40)
    kw = dict(batch_size_per_device=5, num_epochs=2)
    a = _labels(_batches(source, seed=3, **kw))
    b = _labels(_batches(source, seed=3, workers=1, prefetch=0, **kw))
    c = _labels(_batches(source, seed=4, **kw))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_order_is_epoch_order_sliced_into_global_steps():
    """The stream of one process is epoch_order(seed, e) cut into batches (as before grain)."""
    got = np.concatenate(_labels(_batches(_index_source(18), batch_size_per_device=4, seed=9,
                                          num_epochs=2)))
    want = np.concatenate([epoch_order(18, 9, e)[:16] for e in range(2)])
    np.testing.assert_array_equal(got, want)


def test_iterator_state_resumes_exactly_with_threads_or_without():
    source = _index_source(30)
    kw = dict(batch_size_per_device=4, seed=1, num_epochs=3)
    full = _labels(_batches(source, **kw))
    it = _batches(source, workers=3, prefetch=4, **kw)
    for _ in range(8):
        next(it)
    state = it.get_state()
    it.close()
    assert json.loads(json.dumps(state)) == state  # JSON: what orbax's grain handler writes
    resumed = _batches(source, workers=1, prefetch=0, **kw)
    resumed.set_state(state)
    rest = _labels(resumed)
    assert len(rest) == 13 and all(np.array_equal(x, y) for x, y in zip(full[8:], rest,
                                                                          strict=True))


def test_start_step_resumes_exactly():
    source = _index_source(30)
    kw = dict(batch_size_per_device=4, seed=1, num_epochs=3)
    full = _labels(_batches(source, **kw))
    resumed = _labels(_batches(source, start_step=8, **kw))
    assert len(full) == 21 and len(resumed) == 13  # 7 steps/epoch; resume mid-epoch 2
    assert all(np.array_equal(x, y) for x, y in zip(full[8:], resumed, strict=True))


def test_hosts_read_disjoint_shards_of_each_global_step():
    source = _index_source(48)
    kw = dict(batch_size_per_device=3, seed=5, local_devices=2, process_count=4)
    per_host = [_labels(_batches(source, process_index=p, **kw)) for p in range(4)]
    assert [len(h) for h in per_host] == [2, 2, 2, 2]  # 48 / (4 hosts x 2 devices x 3)
    seen = np.concatenate([np.concatenate(h) for h in per_host])
    assert sorted(seen) == list(range(48))
    # Same global step on one host count: identical whatever other hosts do.
    again = _labels(_batches(source, process_index=2, **kw))
    assert all(np.array_equal(x, y) for x, y in zip(per_host[2], again, strict=True))


@pytest.mark.parametrize("per_device, process_index, process_count, message", [
    (4, 0, 1, "global batch"),  # 3 images cannot fill one batch of 4
    (1, 2, 2, "process_index"),
])
def test_errors_for_bad_arguments(per_device, process_index, process_count, message):
    with pytest.raises(ValueError, match=message):
        next(host_batches(_index_source(3), batch_size_per_device=per_device, image_size=(3, 5),
                          seed=0, local_devices=1, process_index=process_index,
                          process_count=process_count))


def test_resize_keeps_dtype_and_identity():
    img = np.random.default_rng(0).integers(0, 256, (363, 360, 3), dtype=np.uint8)
    assert resize_rgb(img, (363, 360)) is img
    out = resize_rgb(img, (224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_eight_fake_cpu_devices(cell_folder):
    """Device counts come from JAX when not given; run where XLA sees 8 CPU devices."""
    script = textwrap.dedent(f"""
        import jax, numpy as np
        from cellssl_jax.data.pipeline import host_batches
        from cellssl_jax.data.reading import FolderSource
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
    assert "OK8" in run_on_cpu_devices(["-c", script], timeout=300, cwd=REPO).stdout


def test_unreadable_images_are_skipped_warned_and_named(cell_folder, caplog):
    """One policy for training and extraction: skip, warn, say why."""
    (cell_folder / "EOS" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (cell_folder / "EOS" / "empty.jpg").write_bytes(b"")
    source = FolderSource(cell_folder)
    assert len(source) == 17  # listed; found unreadable when read
    bad = {i for i, p in enumerate(source.folder.paths) if p.name in ("broken.png", "empty.jpg")}

    batches = list(host_batches(source, batch_size_per_device=5, image_size=(8, 8), seed=0,
                                local_devices=1, process_index=0, process_count=1,
                                num_epochs=1, workers=2))
    # one epoch = 3 steps = 15 of the 17 positions; 2 of those unreadable: 13 images, 2 batches
    assert len(batches) == 2
    assert all(b["image"].shape == (1, 5, 8, 8, 3) for b in batches)
    warned = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert len(warned) == 2 and any("zero-byte" in w for w in warned)

    caplog.clear()
    resize = lambda it: {**it, "image": resize_rgb(it["image"], (8, 8))}  # noqa: E731
    items = list(read_images(source, prepare=resize, workers=3))
    assert [it["index"] for it in items] == list(range(17))  # in order, unreadable ones too
    assert {it["index"] for it in items if it["image"] is None} == bad
    assert all(it["reason"] for it in items if it["image"] is None)
    assert all(it["image"].shape == (8, 8, 3) and it["reason"] is None
               for it in items if it["index"] not in bad)
    assert {it["file_name"] for it in items if it["index"] in bad} == {
        str(source.folder.paths[i]) for i in bad}
    assert len([r for r in caplog.records if "skipping unreadable" in r.getMessage()]) == 2
