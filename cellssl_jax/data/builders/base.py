"""Shared machinery of the cell-image TFDS builders.

Every builder lists (file, class, split hint) records from the user's manual copy of a release;
this module screens them (hidden junk, unreadable files, byte-identical duplicates), assigns the
id-seeded stratified 70/30 split of `cellssl_jax/splits.py` (seed recorded in the builder),
writes `skipped.csv` / `duplicates.csv` beside the prepared data, and emits examples. It runs
without TensorFlow: images are handed to `tfds.features.Image` as encoded bytes (the original file
bytes when TFDS' PIL decoder already gives uint8 RGB, else a lossless PNG of the RGB pixels),
and the output format is array_record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tqdm import tqdm

from cellssl_jax import vocab
from cellssl_jax.data.images import UnreadableImage, decode_rgb
from cellssl_jax.splits import SPLIT_SEED, TRAIN_FRACTION, stratified_split

log = logging.getLogger(__name__)

SKIPPED_CSV = "skipped.csv"
DUPLICATES_CSV = "duplicates.csv"


@dataclass
class Record:
    """One candidate example: where it is, its class, and what screening found."""

    path: Path
    file_name: str  # path relative to the dataset root, posix separators
    label: int  # index into the builder's class names, -1 when unlabelled
    split: str | None = None  # official split (Raabin); None -> stratified 70/30
    extra: dict = field(default_factory=dict)  # builder-specific features (acevedo subtype)
    sha256: str = ""
    reencode: bool = False  # True when the file bytes would not decode to uint8 RGB in TFDS


def is_junk(path: Path, root: Path) -> bool:
    """Hidden files and folders (.DS_Store, ._* AppleDouble, .ipynb_checkpoints, ...)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_files(folder: Path) -> list[Path]:
    """All regular files under `folder`, recursively, in a deterministic order."""
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.as_posix())


def find_dataset_root(manual_dir: Path, expected: Sequence[str], layout: str) -> Path:
    """The folder holding the class (or split) folders: `manual_dir` or a folder below it.

    Users extract releases with or without their top-level folder; accept both by looking
    up to two levels down for a folder containing one of the `expected` sub-folders.
    """
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise FileNotFoundError(f"manual directory {manual_dir} does not exist; {layout}")
    wanted = {name.lower() for name in expected}
    frontier = [manual_dir]
    for _ in range(3):
        for folder in frontier:
            names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
            if names & wanted:
                return folder
        frontier = [
            p for f in frontier for p in sorted(f.iterdir()) if p.is_dir() and p.name[0] != "."
        ]
    raise ValueError(f"no dataset found in manual directory {manual_dir}; {layout}")


def _screen(record: Record) -> str | None:
    """Hash and fully decode one file; returns a skip reason, or None when it is usable."""
    try:
        data = record.path.read_bytes()
        decode_rgb(data, record.path)
        with Image.open(io.BytesIO(data)) as img:
            record.reencode = not (img.format in ("JPEG", "PNG") and img.mode == "RGB")
    except UnreadableImage as err:
        return err.reason
    except OSError as err:
        return f"cannot read file ({err})"
    record.sha256 = hashlib.sha256(data).hexdigest()
    return None


def _write_csv(path: Path, header: Sequence[str], rows: list[Sequence[str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


class CellImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the cell builders; subclasses describe a release and list its records. The label
    order is the dataset's vocabulary (`cellssl_jax/vocab.py`, keyed by the builder's name)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    DESCRIPTION = ""  # the label list is appended
    HOMEPAGE = ""
    CITATION = ""
    LAYOUT = ""  # one line naming the expected manual-directory layout, used in errors

    def __init__(self, *, file_format: str = "array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _extra_features(self) -> dict:
        return {}

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(self.class_names)),
            "file_name": tfds.features.Text(),
            "id": tfds.features.Text(doc="sha256 of the original file bytes"),
            **self._extra_features(),
        }
        return self.dataset_info_from_configs(
            description=f"{self.DESCRIPTION} Labels: "
            + ", ".join(f"{i}={c}" for i, c in enumerate(self.class_names)),
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION,
            metadata=tfds.core.MetadataDict(
                split_seed=SPLIT_SEED,
                train_fraction=TRAIN_FRACTION,
                class_names=list(self.class_names),
            ),
        )

    @property
    def class_names(self) -> Sequence[str]:
        return tuple(vocab.DATASETS[self.name])

    def _list_records(self, manual_dir: Path) -> tuple[Path, list[Record]]:
        """(dataset root, candidate records) from the manual directory."""
        raise NotImplementedError

    def _official_splits(self) -> tuple[str, ...]:
        """Split names given by the records themselves; empty -> stratified train/test."""
        return ()

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root, records = self._list_records(Path(dl_manager.manual_dir))
        if not records:
            raise ValueError(f"no image files found under {root}; {self.LAYOUT}")
        kept, skipped = self._screen_all(root, records)
        kept, duplicates = self._drop_duplicates(kept)
        out = Path(self.data_path)
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / SKIPPED_CSV, ["file_name", "reason"], skipped)
        _write_csv(out / DUPLICATES_CSV, ["file_name", "duplicate_of", "id"], duplicates)
        if skipped:
            log.warning(
                "%s: skipped %d unreadable files, listed in %s",
                self.name,
                len(skipped),
                out / SKIPPED_CSV,
            )
        if duplicates:
            log.warning(
                "%s: dropped %d byte-identical duplicates, listed in %s",
                self.name,
                len(duplicates),
                out / DUPLICATES_CSV,
            )
        if not kept:
            raise ValueError(f"no readable images under {root}; see {out / SKIPPED_CSV}")
        splits = {}  # TFDS serves the union of the splits itself as split="all"
        if self._official_splits():
            for name in self._official_splits():
                splits[name] = [r for r in kept if r.split == name]
        else:
            train = stratified_split(
                [r.sha256 for r in kept], np.array([r.label for r in kept]), SPLIT_SEED
            )
            splits["train"] = [r for r, t in zip(kept, train, strict=True) if t]
            splits["test"] = [r for r, t in zip(kept, train, strict=True) if not t]
        return {name: self._generate_examples(recs) for name, recs in splits.items() if recs}

    def _screen_all(self, root: Path, records: list[Record]) -> tuple[list[Record], list]:
        """Drop junk and unreadable files; returns (usable records, skipped rows)."""
        skipped: list[tuple[str, str]] = []
        candidates = []
        for rec in records:
            if is_junk(rec.path, root):
                skipped.append((rec.file_name, "hidden/junk file"))
            else:
                candidates.append(rec)
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            reasons = list(
                tqdm(
                    pool.map(_screen, candidates),
                    total=len(candidates),
                    desc=f"{self.name}: checking files",
                    leave=False,
                )
            )
        kept = []
        for rec, reason in zip(candidates, reasons, strict=True):
            if reason is None:
                kept.append(rec)
            else:
                log.warning("%s: skipping %s: %s", self.name, rec.path, reason)
                skipped.append((rec.file_name, reason))
        return kept, skipped

    @staticmethod
    def _drop_duplicates(records: list[Record]) -> tuple[list[Record], list]:
        """Keep the first file (in listing order) of each set of byte-identical files."""
        first: dict[str, Record] = {}
        duplicates = []
        for rec in records:
            if rec.sha256 in first:
                duplicates.append((rec.file_name, first[rec.sha256].file_name, rec.sha256))
            else:
                first[rec.sha256] = rec
        return list(first.values()), duplicates

    def _generate_examples(self, records: list[Record]) -> Iterator[tuple[str, dict]]:
        for rec in records:
            data = rec.path.read_bytes()
            if rec.reencode:
                buf = io.BytesIO()
                Image.fromarray(decode_rgb(data, rec.path)).save(buf, format="PNG")
                data = buf.getvalue()
            yield (
                rec.sha256,
                {
                    "image": data,
                    "label": rec.label,
                    "file_name": rec.file_name,
                    "id": rec.sha256,
                    **rec.extra,
                },
            )


def class_folder_records(
    root: Path, class_names: Sequence[str], layout: str, split: str | None = None
) -> list[Record]:
    """Records of a `<root>/<class>/**/<file>` tree whose folder names are class codes.

    Folder names match the codes case-insensitively; an unknown folder is an error (a wrong
    manual directory should not silently lose a class).
    """
    lookup = {name.lower(): i for i, name in enumerate(class_names)}
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name[0] != "."), key=lambda p: p.name
    )
    unknown = [p.name for p in folders if p.name.lower() not in lookup]
    if unknown:
        raise ValueError(
            f"unknown class folders {unknown} in {root}; expected a subset of "
            f"{list(class_names)}; {layout}"
        )
    records = []
    for folder in folders:
        for path in list_files(folder):
            records.append(
                Record(path, path.relative_to(root).as_posix(), lookup[folder.name.lower()], split)
            )
    counts = Counter(r.label for r in records)
    log.info("found %s", {class_names[k]: v for k, v in sorted(counts.items())})
    return records
