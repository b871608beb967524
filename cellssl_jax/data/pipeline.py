"""Training input on grain: a random-access source -> this host's uint8 batches, per device.

The order is ours, the machinery grain's. `HostOrder` (a `grain.MapDataset` over the source,
like grain's own `shuffle`) maps position j of this host's stream to a source index: epoch e
visits `epoch_order(seed, e)`, every global step takes the next `global_batch` indices of it
and process p keeps its contiguous slice (disjoint shards that together are the global batch;
the stream depends only on the seed and the process/device counts). grain then reads the items
(`reading.read_item`: decode, the unreadable-image policy) and resizes them in its reader threads
(`ReadOptions`) or worker processes (`MultiprocessingOptions`), drops unreadable ones, batches
and prefetches. The iterator is grain's: `get_state` / `set_state` (or
`grain.checkpoint.CheckpointSave`) resume it exactly, in the model's orbax checkpoint.
JAX is imported only to ask for device/process counts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import grain
import numpy as np

from cellssl_jax.data.reading import read_item, resize_rgb


def steps_per_epoch(num_examples: int, global_batch: int) -> int:
    """Global steps in one pass over `num_examples` at `global_batch` examples per step (the
    remainder of each epoch is dropped)."""
    return num_examples // global_batch


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The visiting order of epoch `epoch`: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def _device_layout(local_devices: int | None = None, process_index: int | None = None,
                  process_count: int | None = None) -> tuple[int, int, int]:
    """(local devices, process index, process count); the ones not given asked from JAX."""
    if local_devices is None or process_index is None or process_count is None:
        import jax

        local_devices = jax.local_device_count() if local_devices is None else local_devices
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return local_devices, process_index, process_count


class HostOrder(grain.MapDataset):
    """Position j of this host's stream -> item `epoch_order`[...] of the parent source.

    Host step t (from `start_step`) is global step s = start_step + t; its slot r holds index
    k * G + process_index * H + r of epoch s // per_epoch's order (k = s % per_epoch, G the
    global and H the host batch). `num_epochs` None: endless.
    """

    def __init__(self, parent: grain.MapDataset, *, seed: int, host_batch: int,
                 process_index: int, process_count: int, start_step: int = 0,
                 num_epochs: int | None = None):
        super().__init__(parent)
        self.seed, self.host_batch, self.start_step = seed, host_batch, start_step
        self.offset = process_index * host_batch
        self.global_batch = host_batch * process_count
        self.per_epoch = steps_per_epoch(len(parent), self.global_batch)
        if self.per_epoch == 0:
            raise ValueError(
                f"{len(parent)} examples do not fill one global batch of {self.global_batch} "
                f"({process_count} processes x {host_batch} per process)"
            )
        steps = None if num_epochs is None else num_epochs * self.per_epoch - start_step
        self.length = sys.maxsize if steps is None else max(0, steps) * host_batch
        self._cached: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))

    def __len__(self) -> int:
        return self.length

    def __str__(self) -> str:
        return "HostOrder"

    def source_index(self, position: int) -> int:
        step, slot = divmod(position, self.host_batch)
        epoch, k = divmod(self.start_step + step, self.per_epoch)
        cached_epoch, order = self._cached  # one tuple: consistent across reader threads
        if cached_epoch != epoch:
            order = epoch_order(len(self._parent), self.seed, epoch)
            self._cached = (epoch, order)
        return int(order[k * self.global_batch + self.offset + slot])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self.source_index(index)]


class _ReadResized:
    """The item's index and its image at `size`, or None (skipped: `read_item` warned)."""

    def __init__(self, source: Sequence[dict], size: tuple[int, int]):
        self.source, self.size = source, size

    def __call__(self, index: int) -> dict | None:
        item = read_item(self.source, int(index))
        if item["image"] is None:
            return None
        return {"image": resize_rgb(item["image"], self.size), "label": np.int32(item["label"])}


class _PerDevice:
    """Host batch [L * P, ...] -> [L, P, ...]."""

    def __init__(self, local_devices: int):
        self.local_devices = local_devices

    def __call__(self, batch: dict) -> dict:
        return {k: v.reshape(self.local_devices, -1, *v.shape[1:]) for k, v in batch.items()}


def host_batches(
    source: Sequence[dict],
    *,
    batch_size_per_device: int,
    image_size: tuple[int, int],
    seed: int,
    local_devices: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    start_step: int = 0,
    num_epochs: int | None = None,
    workers: int | None = None,
    prefetch: int = 2,
    worker_processes: int = 0,
) -> grain.DatasetIterator:
    """This host's batches, a grain iterator: {"image": uint8 [L, P, H, W, 3], "label": int32
    [L, P]} with L local devices and P = batch_size_per_device.

    Steps are global (`HostOrder`); `start_step` starts at that global step. Unreadable images
    are skipped (warned, `reading.read_item`) and the batch filled from the following ones.
    `workers` reader threads (default: the CPU count, at most 8) keep `prefetch` images each read
    ahead (`prefetch` x `workers` in flight: not whole batches, see `read_ahead` below);
    `worker_processes` > 0 reads in that many grain worker processes instead, each keeping
    `prefetch` batches ready (each builds whole batches from its own slice of the stream, so the
    batches differ from the threaded ones, deterministically for a given count). The iterator's
    `get_state()` is JSON; after `set_state` it continues exactly where the saved one was (same
    arguments).
    """
    local_devices, process_index, process_count = _device_layout(
        local_devices, process_index, process_count
    )
    if batch_size_per_device < 1 or local_devices < 1:
        raise ValueError("batch_size_per_device and local_devices must be >= 1")
    if seed < 0 or start_step < 0:
        raise ValueError(f"seed ({seed}) and start_step ({start_step}) must be >= 0")
    host_batch = local_devices * batch_size_per_device
    order = HostOrder(grain.MapDataset.range(len(source)), seed=seed, host_batch=host_batch,
                      process_index=process_index, process_count=process_count,
                      start_step=start_step, num_epochs=num_epochs)
    workers = workers or min(8, os.cpu_count() or 1)
    # Images in flight (0: read in this thread, nothing ahead). Not prefetch x host_batch: grain
    # 0.2.18 scans its read-ahead buffer up to the first unfinished read at every image it hands
    # out (PrefetchDatasetIterator._measure_prefetch_depth), in the consumer's thread, so with
    # readers ahead a buffer of whole batches costs host_batch x buffer lock calls per batch:
    # 256 x 1024 for bundled_h200, 136-229 ms of the training loop's thread per step on a 2-core
    # CPU (docs/measurements/2026-12-04_h200_input), the suspected cap of its 566-660 img/s.
    read_ahead = prefetch * workers
    dataset = (
        order.map(_ReadResized(source, image_size))
        .to_iter_dataset(grain.ReadOptions(num_threads=workers, prefetch_buffer_size=read_ahead))
        .batch(host_batch, drop_remainder=True)
        .map(_PerDevice(local_devices))
    )
    if worker_processes > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=worker_processes, per_worker_buffer_size=max(1, prefetch)))
    return iter(dataset)

