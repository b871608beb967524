"""Any lab's folder of cells: class sub-folders (labels from folder names) or flat (unlabelled)."""

from __future__ import annotations

import re
from pathlib import Path

import tensorflow_datasets as tfds

from cellssl_jax.data.builders.base import CellImageBuilder, Record, list_files
from cellssl_jax.data.images import LAYOUT_HELP


def config_name(root: str | Path) -> str:
    """A TFDS-safe config name from a folder name ("My Lab 2024" -> "my_lab_2024")."""
    slug = re.sub(r"[^0-9a-z]+", "_", Path(root).resolve().name.lower()).strip("_")
    return slug or "folder"


def folder_classes(root: Path) -> list[str]:
    """Sorted names of the visible sub-folders holding at least one visible file."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and p.name[0] != "."
        and any(not f.name.startswith(".") for f in list_files(p))
    )


class ImageFolder(CellImageBuilder):
    """A user's folder as a TFDS dataset; build with `ImageFolder(root=..., data_dir=...)`.

    The class names are read from `root` when the builder is made, so reading a prepared
    folder dataset back goes through its files: `tfds.builder("image_folder/<config>",
    data_dir=...)` (what `pipeline.tfds_source` does).
    """

    name = "image_folder"
    LAYOUT = LAYOUT_HELP
    DESCRIPTION = "Cells from a user's image folder; labels are the sorted sub-folder names."
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Pass the image folder as `root`; {LAYOUT_HELP}."

    def __init__(self, *, root: str | Path, config: str | None = None, **kwargs):
        self._root = Path(root)
        if not self._root.is_dir():
            raise FileNotFoundError(f"image folder {self._root} does not exist; {LAYOUT_HELP}")
        self._classes = folder_classes(self._root)
        name = config or config_name(self._root)
        cfg = tfds.core.BuilderConfig(name=name, description=f"images from {self._root}")
        super().__init__(config=cfg, **kwargs)

    @property
    def class_names(self) -> list[str]:
        return self._classes

    def download_and_prepare(self, *, download_config=None, **kwargs):
        """Prepare from `root` (it plays the manual directory)."""
        download_config = download_config or tfds.download.DownloadConfig()
        download_config.manual_dir = self._root
        return super().download_and_prepare(download_config=download_config, **kwargs)

    def _list_records(self, manual_dir: Path) -> tuple[Path, list[Record]]:
        root = Path(manual_dir)
        if not self._classes:  # flat folder: every visible file, unlabelled
            files = [p for p in sorted(root.iterdir()) if p.is_file() and p.name[0] != "."]
            return root, [Record(p, p.name, -1) for p in files]
        records = []
        for label, name in enumerate(self._classes):
            for path in list_files(root / name):
                records.append(Record(path, path.relative_to(root).as_posix(), label))
        return root, records
