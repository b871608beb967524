"""Featurize a dataset: every image of a folder or TFDS split through a featurizer -> Features.

Images are read, checked and prepared in grain's reader threads (data/reading.read_images, the
reader training uses too), ahead of the featurizer. Unreadable images follow the reader's one
policy: skipped, warned about and listed with the reason (`Features.skipped`,
`<out stem>.skipped.csv`); readable but doubtful ones (greyscale, an alpha channel hiding
pixels, far larger than the read size) are kept, warned about once per kind and listed in
`<out stem>.flagged.csv`. Saving is optional; with an `out` file the run is resumable: every
`save_every` seconds the rows done so far go to `<out>.partial.npz`, and a rerun with the same
arguments continues from there.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cellssl_jax.data.images import doubts
from cellssl_jax.data.reading import FolderSource, read_images, tfds_source
from cellssl_jax.featurize.featurizers import Featurizer
from cellssl_jax.fewshot.features import Features, save_features

log = logging.getLogger("cellssl_jax.featurize")

LISTED = ("path", "reason")  # the header of the skipped and flagged lists
CHUNK_BATCHES = 8  # images are read and finished in chunks of this many batches


def open_source(spec: str, data_dir: str | None = None):
    """A folder path or `tfds:<name>/<split>` -> a random-access source of images."""
    if spec.startswith("tfds:"):
        name, sep, split = spec[len("tfds:") :].rpartition("/")
        if not sep or not name or not split:
            raise ValueError(f"expected tfds:<name>/<split>, got {spec!r}")
        return tfds_source(name, split, data_dir)
    return FolderSource(spec)


def _item_id(source, index: int, item: dict | None, spec: str) -> str:
    folder = getattr(source, "folder", None)  # FolderSource knows its paths without reading
    if folder is not None:
        return str(folder.paths[index])
    if item is not None and (item.get("file_name") or item.get("id")):
        return str(item.get("file_name") or item.get("id"))
    return f"{spec}#{index}"


class Partial:
    """Rows finished so far, saved to / resumed from `<out>.partial.npz` (nothing is saved
    when `out` is None)."""

    def __init__(self, out: Path | None, fingerprint: dict):
        self.path = None if out is None else out.with_name(out.name + ".partial.npz")
        self.fingerprint = json.dumps(fingerprint, sort_keys=True)
        self.next_index = 0
        self.features: list[np.ndarray] = []
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.flagged: list[tuple[str, str, str]] = []  # (id, kind, reason)

    def resume(self) -> bool:
        if self.path is None or not self.path.exists():
            return False
        with np.load(self.path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != self.fingerprint:
                raise ValueError(
                    f"{self.path} belongs to a run with other arguments or inputs "
                    f"({data['fingerprint']}); delete it to start over"
                )
            self.next_index = int(data["next_index"])
            self.features = list(data["features"])
            self.labels = data["labels"].tolist()
            self.ids = data["ids"].tolist()
            self.skipped = [tuple(s) for s in data["skipped"].reshape(-1, 2).tolist()]
            if "flagged" in data.files:  # absent from partials of older versions
                self.flagged = [tuple(s) for s in data["flagged"].reshape(-1, 3).tolist()]
        return True

    def save(self, dim: int) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        feats = np.stack(self.features) if self.features else np.zeros((0, dim), np.float32)
        np.savez(
            tmp,
            fingerprint=np.asarray(self.fingerprint),
            next_index=np.asarray(self.next_index),
            features=feats,
            labels=np.asarray(self.labels, dtype=np.int64),
            ids=np.asarray(self.ids, dtype=str),
            skipped=np.asarray(self.skipped, dtype=str).reshape(-1, 2),
            flagged=np.asarray(self.flagged, dtype=str).reshape(-1, 3),
        )
        tmp.replace(self.path)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Prepare:
    """Per-image work in the reader threads: the featurizer's preparation and the doubts about
    the image (images.doubts) and about its row (the featurizer's); the pixels are dropped after."""

    def __init__(self, featurizer: Featurizer):
        self.featurizer = featurizer
        read = featurizer.read
        self.side = read.square if read is not None else None

    def __call__(self, item: dict) -> dict:
        image = item.pop("image")
        prepared = self.featurizer.prepare(image)
        item["doubts"] = (doubts(image, item.pop("transparent", 0.0), self.side)
                          + self.featurizer.doubts(prepared))
        item["prepared"] = prepared
        return item


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """A CSV file: the header, then the rows."""
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def warn_flagged(flagged: list[tuple[str, str, str]], listed_in: Path | str) -> None:
    """One warning per kind of doubtful image: how many, the first one, where all are listed."""
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for ident, kind, reason in flagged:
        by_kind.setdefault(kind, []).append((ident, reason))
    for kind, items in by_kind.items():
        ident, reason = items[0]
        more = f" and {len(items) - 1} more" if len(items) > 1 else ""
        log.warning("%d %s image(s), kept but doubtful: %s (%s)%s; all listed in %s",
                    len(items), kind, ident, reason, more, listed_in)


def featurize(
    source,
    spec: str,
    featurizer: Featurizer,
    out: Path | None = None,
    workers: int = 4,
    save_every: float = 60.0,
) -> tuple[Features, dict]:
    """Run `featurizer` over `source` (described by `spec`) -> (features of the readable
    images, stats). With `out`, resumes from `<out>.partial.npz` and writes the features file
    and the skipped/flagged CSVs beside it."""
    read = featurizer.read
    fingerprint = {
        "images": spec,
        "count": len(source),
        "features": featurizer.name,
        "sha256": featurizer.sha256,
        "image_size": read.side if read is not None else None,
    }
    if read is not None and read.crop is not None:  # absent from older partials' fingerprints
        fingerprint["crop"] = read.crop.name
    chunk = featurizer.batch_size * CHUNK_BATCHES
    part = Partial(out, fingerprint)
    if part.resume():
        log.info("resuming %s at image %d of %d", part.path, part.next_index, len(source))
    featurizer.load_cache()
    start, last_save, done_now = time.perf_counter(), time.perf_counter(), 0
    before = replace(featurizer.counts)  # a copy: an encoder's counts grow in place
    # The bar is drawn on a terminal only (in a log file every redraw, the closing one included,
    # would be a line of its own); log lines print above it.
    items = read_images(source, range(part.next_index, len(source)), _Prepare(featurizer),
                        workers)
    # The bar is drawn on a terminal only (in a log file every redraw, the closing one included,
    # would be a line of its own); log lines print above it.
    with (
        tqdm(total=len(source), initial=part.next_index, unit="img", desc="extract",
             disable=None) as bar,
        logging_redirect_tqdm([logging.getLogger(), logging.getLogger("cellssl_jax")]),
    ):
        try:
            while chunk_items := list(itertools.islice(items, chunk)):
                good = [item for item in chunk_items if "prepared" in item]
                for item in chunk_items:
                    if "prepared" not in item:  # unreadable: warned by the reader
                        ident = _item_id(source, item["index"], None, spec)
                        part.skipped.append((ident, item["reason"]))
                feats = featurizer([item["prepared"] for item in good])
                part.features.extend(feats)
                part.labels.extend(int(item["label"]) for item in good)
                part.ids.extend(_item_id(source, item["index"], item, spec) for item in good)
                part.flagged.extend(
                    (_item_id(source, item["index"], item, spec), kind, reason)
                    for item in good
                    for kind, reason in item["doubts"]
                )
                part.next_index = chunk_items[-1]["index"] + 1
                done_now += len(chunk_items)
                bar.update(len(chunk_items))
                more = part.next_index < len(source)
                if time.perf_counter() - last_save > save_every and more:
                    part.save(featurizer.dim)
                    featurizer.flush_cache()
                    last_save = time.perf_counter()
        finally:  # rows encoded before an error or Ctrl-C are kept for the next run
            featurizer.flush_cache()
    seconds = time.perf_counter() - start
    if not part.features:
        raise ValueError(f"no readable image in {spec} ({len(part.skipped)} skipped)")
    features = Features(
        np.stack(part.features).astype(np.float32, copy=False),
        np.asarray(part.labels, dtype=np.int64),
        list(source.class_names),
        [str(i) for i in part.ids],
        featurizer.name,
        featurizer.sha256,
        [s for s, _ in part.skipped],
        str(out) if out is not None else spec,
        read.name if read is not None else "",
    )
    if out is not None:
        _save(features, out, part)
    part.discard()
    after = featurizer.counts
    return features, {
        "images": len(part.features),
        "skipped": len(part.skipped),
        "skipped_files": part.skipped,
        "flagged_files": [(i, r) for i, _, r in part.flagged],
        "encoded": after.encoded - before.encoded,
        "from_cache": after.from_cache - before.from_cache,
        "seconds": seconds,
        "images_per_second": done_now / seconds if seconds > 0 else float("nan"),
        "shapes": sorted(after.shapes),
    }


def _save(features: Features, out: Path, part: Partial) -> None:
    """The features file and, when there are any, the skipped and flagged CSVs beside it."""
    save_features(out, features.features, features.labels, features.class_names,
                  features.paths, features.encoder, features.encoder_sha256, features.skipped,
                  features.read_size)
    if part.skipped:
        skipped_csv = write_csv(out.with_name(out.stem + ".skipped.csv"), LISTED, part.skipped)
        log.info("wrote %s (%d unreadable images)", skipped_csv, len(part.skipped))
    if part.flagged:
        flagged_csv = write_csv(out.with_name(out.stem + ".flagged.csv"), LISTED,
                                [(i, r) for i, _, r in part.flagged])
        warn_flagged(part.flagged, flagged_csv)


def featurize_folder(
    folder: str | Path,
    featurizer: Featurizer,
    out: Path | None = None,
    workers: int = 2,
    source: FolderSource | None = None,
) -> tuple[Features, dict]:
    """`featurize` over every image under `folder` (`source`: its scan, when done already)."""
    return featurize(source or FolderSource(folder), str(folder), featurizer, out, workers)
