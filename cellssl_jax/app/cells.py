"""The cells of the page's folder and their thumbnails.

A cell is named by its path relative to the folder, as `classify`'s CSVs name it. Only cells
of the folder's scan are served, and only when the file really lies inside the folder (a
symlink pointing out is refused), so `..`, absolute paths and encoded tricks name no cell.
Thumbnails are made once per size and kept under `<state>/thumbs/` (JPEG), keyed by the
file's name, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cellssl_jax.data.images import scan_folder

SIZES = (128, 384)  # grid thumbnails; the large view of the cell being labelled
MAX_PIXELS = 40_000_000  # larger images get a message, not a decode (a cell is ~0.1 MP)
MAX_BYTES = 200 * 2**20


class CellError(Exception):
    """A cell that cannot be shown: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Cell:
    name: str  # relative to the folder, '/'-separated
    path: Path
    version: str  # changes when the file does (size + mtime): thumbnail URLs carry it


class Cells:
    """The folder's scan: cells by name, in the scan's (classify's) order."""

    def __init__(self, folder: Path, thumbs: Path):
        self.folder = Path(folder)
        self.root = self.folder.resolve()
        self.thumbs = Path(thumbs)
        self.order: list[Cell] = []
        for path in scan_folder(self.folder).paths:
            st = path.stat()
            name = path.relative_to(self.folder).as_posix()
            self.order.append(Cell(name, path, f"{st.st_size:x}-{st.st_mtime_ns:x}"))
        self.by_name = {c.name: c for c in self.order}

    def __len__(self) -> int:
        return len(self.order)

    def names(self) -> list[str]:
        return [c.name for c in self.order]

    def signature(self) -> str:
        """Changes when any cell is added, removed or modified (features are then recomputed)."""
        h = hashlib.sha256()
        for c in self.order:
            h.update(f"{c.name}\0{c.version}\n".encode())
        return h.hexdigest()

    def check(self, name: object) -> Cell:
        """The cell called `name`, if it is one of the folder's and lies inside it."""
        if not isinstance(name, str) or name not in self.by_name:
            raise CellError(404, f"no cell {str(name)[:200]!r} in {self.folder}")
        cell = self.by_name[name]
        if not cell.path.resolve().is_relative_to(self.root):
            raise CellError(403, f"{name} points outside {self.folder}; not served")
        return cell

    def thumbnail(self, name: object, size: int) -> Path:
        """The cached JPEG thumbnail of a cell (made now if missing); CellError when the file
        is not an image or too large."""
        if size not in SIZES:
            raise CellError(400, f"thumbnail size must be one of {SIZES}, got {size}")
        cell = self.check(name)
        key = hashlib.sha1(f"{cell.name}\0{cell.version}".encode()).hexdigest()
        out = self.thumbs / str(size) / key[:2] / f"{key}.jpg"
        if out.exists():
            return out
        image = _open_cell(cell, size)
        image.thumbnail((size, size), Image.BILINEAR)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.{id(image)}.tmp")
        image.save(tmp, "JPEG", quality=88)
        tmp.replace(out)  # atomic: a concurrent request sees the old state or the whole file
        return out


def _open_cell(cell: Cell, size: int) -> Image.Image:
    """Decode a cell for a thumbnail, refusing non-images and huge images with a message."""
    if cell.path.stat().st_size > MAX_BYTES:
        raise CellError(413, f"{cell.name} is larger than {MAX_BYTES >> 20} MB; not shown")
    try:
        image = Image.open(cell.path)
        w, h = image.size
        if w * h > MAX_PIXELS:
            raise CellError(413, f"{cell.name} is {w}x{h} pixels, too large to show "
                                 f"(limit {MAX_PIXELS // 1_000_000} MP); is it a cell?")
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            flat = Image.new("RGB", image.size, "white")
            flat.paste(image, mask=image.getchannel("A"))
            return flat
        return image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise CellError(415, f"{cell.name} is not an image Pillow can read ({err})") from None
    except OSError as err:
        raise CellError(415, f"{cell.name} cannot be read as an image ({err})") from None
