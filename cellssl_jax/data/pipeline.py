"""Input pipeline: any random-access source of cells -> per-host uint8 batches for pmap.

A *source* is a sequence whose item i is a dict with "image" (uint8 [H, W, 3]) and "label"
(int). The pipeline owns the order: epoch e visits a permutation that is a function of
(seed, e) only; every global step takes the next `global_batch` indices of it and host p keeps
its contiguous slice, so hosts read disjoint shards and the stream depends only on the seed and
the host/device counts. `start_step` jumps straight to a global step (exact resume, nothing
decoded for the skipped steps). Decoding and resizing run in a thread pool (PIL releases the
GIL) with a few batches in flight. JAX is imported only to ask for device/process counts.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from cellssl_jax.data.images import UnreadableImage, read_image, read_rgb, scan_folder

log = logging.getLogger(__name__)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [H, W, 3] with PIL bilinear (antialiased when shrinking)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    out = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


class FolderSource:
    """A folder of cells (class sub-folders or flat) as a source, decoded on access.

    With `check=True` every file is decoded once up front and unreadable ones (truncated,
    zero-byte, not an image) are dropped with a warning and kept in `.skipped` as
    (path, reason), so a long job does not stop on the one bad file of a lab's folder.
    """

    def __init__(self, root: str | Path, check: bool = False, workers: int | None = None):
        folder = scan_folder(root)
        self.skipped: list[tuple[Path, str]] = []
        if check:
            with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
                reasons = list(pool.map(_unreadable_reason, folder.paths))
            keep = [r is None for r in reasons]
            for path, reason in zip(folder.paths, reasons, strict=True):
                if reason is not None:
                    log.warning("skipping unreadable image %s: %s", path, reason)
                    self.skipped.append((path, reason))
            folder = replace(
                folder,
                paths=[p for p, k in zip(folder.paths, keep, strict=True) if k],
                labels=folder.labels[np.asarray(keep, dtype=bool)],
            )
        self.folder = folder

    @property
    def class_names(self) -> list[str]:
        return self.folder.class_names

    def __len__(self) -> int:
        return len(self.folder.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.folder.paths[i]
        image, transparent = read_image(path)
        return {
            "image": image,
            "label": int(self.folder.labels[i]),
            "file_name": str(path),
            "transparent": transparent,  # fraction of pixels an alpha channel hid
        }


def _unreadable_reason(path: Path) -> str | None:
    try:
        read_rgb(path)
    except UnreadableImage as err:
        return err.reason
    return None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TfdsSource:
    """A prepared TFDS split (array_record, random access) as a source."""

    def __init__(self, data_source, class_names: list[str]):
        self.data_source = data_source
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, i: int) -> dict:
        ex = self.data_source[int(i)]
        item = {"image": ex["image"], "label": int(ex["label"])}
        for key in ("file_name", "id"):
            if key in ex:
                item[key] = _text(ex[key])
        return item


def tfds_source(name: str, split: str, data_dir: str | Path | None = None) -> TfdsSource:
    """Open a prepared split ("train", "test", "all", "train[:10%]", ...) without TensorFlow.

    `name` is a builder of `cellssl_jax.data.builders` ("acevedo", "matek_bm", ...) or a
    prepared folder dataset "image_folder/<config>" (read back from its files).
    """
    import tensorflow_datasets as tfds

    import cellssl_jax.data.builders  # noqa: F401  (registers the builders)

    kwargs = {"data_dir": str(data_dir)} if data_dir is not None else {}
    try:
        builder = tfds.builder(name, **kwargs)
    except (tfds.core.registered.DatasetNotFoundError, TypeError) as err:
        raise FileNotFoundError(
            f"dataset {name!r} not found in {data_dir or 'the default TFDS data dir'}: {err}; "
            "prepare it first with `python -m cellssl_jax.data.prepare`"
        ) from None
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared in {builder.data_dir}; prepare it first with "
            f"`python -m cellssl_jax.data.prepare {name.split('/')[0]} --manual_dir DIR "
            f"--data_dir {data_dir or '<dir>'}`"
        )
    label = builder.info.features["label"]
    return TfdsSource(builder.as_data_source(split=split), list(label.names))


def steps_per_epoch(num_examples: int, global_batch: int, drop_remainder: bool = True) -> int:
    """Global steps in one pass over `num_examples` at `global_batch` examples per step."""
    if drop_remainder:
        return num_examples // global_batch
    return math.ceil(num_examples / global_batch)


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The visiting order of epoch `epoch`: a function of (seed, epoch) only."""
    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def _device_layout(local_devices, process_index, process_count) -> tuple[int, int, int]:
    if local_devices is None or process_index is None or process_count is None:
        import jax

        local_devices = jax.local_device_count() if local_devices is None else local_devices
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return local_devices, process_index, process_count


def host_batches(
    source: Sequence[dict],
    *,
    batch_size_per_device: int,
    image_size: tuple[int, int],
    seed: int,
    local_devices: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    shuffle: bool = True,
    start_step: int = 0,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    workers: int | None = None,
    prefetch: int = 2,
) -> Iterator[dict]:
    """Yield this host's batches: {"image": uint8 [L, P, H, W, 3], "label": int32 [L, P],
    "mask": bool [L, P]} with L local devices and P = batch_size_per_device.

    Steps are global: step s holds indices [s*G, (s+1)*G) of its epoch's order (G = P * L *
    process_count); host p takes the p-th contiguous slice of it. With drop_remainder=False
    the last step of an epoch is padded (zero images, label -1, mask False) so every example
    is seen once; with shuffle=False too, unmasked examples come in source order (feature
    extraction). Training keeps the defaults. num_epochs=None repeats
    forever. start_step resumes exactly at that global step.
    """
    local_devices, process_index, process_count = _device_layout(
        local_devices, process_index, process_count
    )
    if batch_size_per_device < 1 or local_devices < 1:
        raise ValueError("batch_size_per_device and local_devices must be >= 1")
    if seed < 0 or start_step < 0:
        raise ValueError(f"seed ({seed}) and start_step ({start_step}) must be >= 0")
    height, width = image_size
    num_examples = len(source)
    host_batch = local_devices * batch_size_per_device
    global_batch = host_batch * process_count
    per_epoch = steps_per_epoch(num_examples, global_batch, drop_remainder)
    if per_epoch == 0:
        raise ValueError(
            f"{num_examples} examples do not fill one global batch of {global_batch} "
            f"({process_count} hosts x {local_devices} devices x {batch_size_per_device})"
        )
    total_steps = None if num_epochs is None else num_epochs * per_epoch

    def plan() -> Iterator[np.ndarray]:
        """Source indices of this host's batches, -1 for padding."""
        step, cached_epoch, order = start_step, -1, np.empty(0, dtype=np.int64)
        while total_steps is None or step < total_steps:
            epoch, k = divmod(step, per_epoch)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, epoch_order(num_examples, seed, epoch, shuffle)
            chunk = order[k * global_batch : (k + 1) * global_batch]
            host = chunk[process_index * host_batch : (process_index + 1) * host_batch]
            yield np.pad(host, (0, host_batch - len(host)), constant_values=-1)
            step += 1

    def load(index: int) -> tuple[np.ndarray, int]:
        item = source[index]
        return resize_rgb(np.asarray(item["image"], dtype=np.uint8), (height, width)), int(
            item["label"]
        )

    pad_image = np.zeros((height, width, 3), dtype=np.uint8)

    def submit(pool: ThreadPoolExecutor, indices: np.ndarray) -> list[Future | None]:
        return [pool.submit(load, int(i)) if i >= 0 else None for i in indices]

    def assemble(futures: list[Future | None]) -> dict:
        loaded = [f.result() if f is not None else (pad_image, -1) for f in futures]
        images = np.stack([img for img, _ in loaded])
        labels = np.array([label for _, label in loaded], dtype=np.int32)
        mask = np.array([f is not None for f in futures])
        shape = (local_devices, batch_size_per_device)
        return {
            "image": images.reshape(shape + images.shape[1:]),
            "label": labels.reshape(shape),
            "mask": mask.reshape(shape),
        }

    workers = workers or min(8, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="cellssl-input")
    pending: deque[list[Future | None]] = deque()
    steps = plan()
    try:
        for indices in steps:
            pending.append(submit(pool, indices))
            if len(pending) > prefetch:
                yield assemble(pending.popleft())
        while pending:
            yield assemble(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
