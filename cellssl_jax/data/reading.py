"""Random-access sources of cells and the one way every job reads them (through grain).

A *source* is a sequence whose item i is a dict with "image" (uint8 [H, W, 3]) and "label"
(int), plus what it knows ("file_name", "id", "transparent"): a folder of images
(`FolderSource`) or a prepared TFDS split (`tfds_source`, array_record, random access).

`read_item` holds the one policy for an image that cannot be decoded (truncated, zero-byte, not
an image): it is skipped, a warning names it, and the item says why (`reason`), so the caller
lists it (extract's skipped.csv; training's log). `read_images` reads given indices in order
with decoding and resizing in grain's reader threads (PIL releases the GIL); the training
pipeline (`pipeline.host_batches`) maps the same `read_item` inside its grain dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grain
import numpy as np
from PIL import Image

from cellssl_jax.data.images import UnreadableImage, read_image, scan_folder

log = logging.getLogger(__name__)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [H, W, 3] with PIL bilinear (antialiased when shrinking)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    out = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


class FolderSource:
    """A folder of cells (class sub-folders or flat) as a source, decoded on access (an
    unreadable file raises `UnreadableImage`: `read_item` turns that into a skip)."""

    def __init__(self, root: str | Path):
        self.folder = scan_folder(root)

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


def read_item(source: Sequence[dict], index: int) -> dict:
    """Item `index` with "index", its "image" as uint8 RGB [H, W, 3] and "reason" None; or, for
    an unreadable image, "image" None and the "reason" (warned here, listed by the caller).
    "file_name" names the image where the source knows it."""
    try:
        item = dict(source[index])
    except UnreadableImage as err:
        log.warning("skipping unreadable image %s: %s", err.path, err.reason)
        return {"index": index, "image": None, "reason": err.reason, "file_name": err.path}
    image = np.asarray(item["image"])
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3].astype(np.uint8, copy=False)
    return {**item, "index": index, "image": image, "reason": None}


class _Read:
    """read_item, then `prepare` on a readable item (a class, not a closure: grain's worker
    processes pickle it)."""

    def __init__(self, source: Sequence[dict], prepare: Callable[[dict], dict] | None):
        self.source, self.prepare = source, prepare

    def __call__(self, index: int) -> dict:
        item = read_item(self.source, int(index))
        return item if item["image"] is None or self.prepare is None else self.prepare(item)


def read_images(
    source: Sequence[dict],
    indices: Sequence[int] | None = None,
    prepare: Callable[[dict], dict] | None = None,
    workers: int = 4,
    buffer: int | None = None,
) -> Iterator[dict]:
    """Items `indices` (default: all) of `source`, in that order, read by `workers` grain
    threads (`buffer` items ahead, default 4 per thread).

    Each item is `read_item`'s: "index", "image" (uint8 RGB [H, W, 3]; None when unreadable),
    "reason" (None, or why it was skipped), plus the source's fields. `prepare(item) -> item`
    runs in the reader threads on readable items only, e.g. a resize:
    ``lambda it: {**it, "image": resize_rgb(it["image"], (224, 224))}``.
    """
    order = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    options = grain.ReadOptions(num_threads=max(1, workers),
                                prefetch_buffer_size=buffer or 4 * max(1, workers))
    dataset = grain.MapDataset.source(order).map(_Read(source, prepare))
    return iter(dataset.to_iter_dataset(options))
