"""Image files on disk: robust RGB decoding and class-folder scanning.

Kept to numpy + PIL so that every job (and a lab's own scripts) can read cells without
pulling in TFDS or JAX.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
)

LAYOUT_HELP = (
    "expected either <root>/<class name>/**/<image> (labelled: one sub-folder per class, "
    "nested folders inside a class allowed) or <root>/<image> (a flat, unlabelled folder); "
    f"image suffixes: {', '.join(sorted(IMAGE_SUFFIXES))}"
)


class UnreadableImage(Exception):
    """A file that cannot be decoded as an image (truncated, corrupt, zero bytes, not an image)."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _to_rgb(img: Image.Image) -> tuple[np.ndarray, float]:
    """Any PIL mode -> (uint8 RGB, fraction of pixels not fully opaque); alpha is dropped."""
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # palette transparency must pass through RGBA first
    transparent = 0.0
    if "A" in img.getbands():
        alpha = np.asarray(img.getchannel("A"))
        transparent = float((alpha < 255).mean())
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        gray = np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1), transparent
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy(), transparent


def decode_image(data: bytes, origin: str | Path = "<bytes>") -> tuple[np.ndarray, float]:
    """Decode encoded image bytes to (uint8 [H, W, 3], fraction of pixels an alpha channel made
    transparent, 0 without one); `origin` names the source in errors."""
    if not data:
        raise UnreadableImage(origin, "zero-byte file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # force a full decode: Image.open only reads the header
            rgb, transparent = _to_rgb(img)
    except UnidentifiedImageError:
        raise UnreadableImage(origin, "not an image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated/corrupt streams
        raise UnreadableImage(origin, f"corrupt or truncated image ({err})") from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise UnreadableImage(origin, f"unexpected decoded shape {rgb.shape}")
    return rgb, transparent


def decode_rgb(data: bytes, origin: str | Path = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to uint8 [H, W, 3]; `origin` names the source in errors."""
    return decode_image(data, origin)[0]


def read_image(path: str | Path) -> tuple[np.ndarray, float]:
    """An image file as (uint8 [H, W, 3], fraction of transparent pixels): see decode_image."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UnreadableImage(path, f"cannot read file ({err.strerror or err})") from None
    return decode_image(data, path)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3] (RGBA/grayscale/palette -> RGB)."""
    return read_image(path)[0]


GREY_SPREAD = 4.0  # mean max-min over RGB channels below this: no colour (stained cells: > 30)
LARGE_FACTOR = 3  # an image this many times the read side is more than one cell, or a scan


def doubts(image: np.ndarray, transparent: float = 0.0, read_side: int | None = None
           ) -> list[tuple[str, str]]:
    """Why a readable cell image may give wrong features, as (kind, reason) pairs: greyscale
    (stains carry the class: a grey neutrophil reads as an erythroblast), an alpha channel
    hiding pixels (dropped, the hidden pixels are read as they are), or far larger than the
    `read_side` the encoder shrinks it to."""
    found = []
    if image.ndim == 2 or image.shape[-1] == 1 or _spread(image) < GREY_SPREAD:
        found.append(("greyscale", "greyscale: no stain colour, which the features rely on"))
    if transparent > 0:
        found.append(("transparent", f"alpha channel: {transparent:.1%} of pixels not opaque; "
                                     "alpha is dropped and the hidden pixels are read"))
    if read_side and max(image.shape[:2]) > LARGE_FACTOR * read_side:
        h, w = image.shape[:2]
        found.append(("large", f"{w}x{h} pixels, shrunk to {read_side}x{read_side}: more than "
                               f"{LARGE_FACTOR}x the read size (several cells or a whole field?)"))
    return found


def _spread(image: np.ndarray) -> float:
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))  # ~64k pixels suffice
    pixels = image[::step, ::step].astype(np.int16)
    return float((pixels.max(axis=-1) - pixels.min(axis=-1)).mean())


def is_hidden(path: Path, root: Path) -> bool:
    """True for dot-files and anything inside a dot-folder below `root` (.DS_Store, .ipynb_...)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def relative_name(path: str | Path, root: str | Path) -> str:
    """How output CSVs name a cell: its path relative to the folder `root` when inside it (short,
    portable with the folder), else the path as given."""
    full, root = Path(path).resolve(), Path(root).resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)


def _images_under(folder: Path, root: Path) -> list[Path]:
    files = (p for p in folder.rglob("*") if p.is_file() and not is_hidden(p, root))
    return sorted((p for p in files if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: str(p))


@dataclass(frozen=True)
class ImageFolder:
    """A scanned image folder: file paths with integer labels (-1 everywhere when flat)."""

    root: Path
    paths: list[Path]
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def scan_folder(root: str | Path) -> ImageFolder:
    """List the images of a class-folder tree or of a flat folder, in a deterministic order.

    Labelled: every visible sub-folder of `root` holding at least one image is a class (sorted
    names -> labels 0..C-1); images in nested folders belong to the top-level class folder.
    Flat: images directly in `root`, all labelled -1. Hidden files/folders are ignored.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist; {LAYOUT_HELP}")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder; {LAYOUT_HELP}")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    subdirs = sorted((p for p in entries if p.is_dir()), key=lambda p: p.name)
    loose = sorted(
        (p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )
    if subdirs and loose:
        raise ValueError(
            f"{root} mixes {len(loose)} loose images (e.g. {loose[0].name}) with class "
            f"folders ({', '.join(d.name for d in subdirs[:5])}); {LAYOUT_HELP}"
        )
    if loose:
        return ImageFolder(root, loose, np.full(len(loose), -1, dtype=np.int64), [])
    paths: list[Path] = []
    labels: list[int] = []
    class_names: list[str] = []
    for folder in subdirs:
        found = _images_under(folder, root)
        if not found:
            log.warning("class folder %s holds no images; it is not a class", folder)
            continue
        paths.extend(found)
        labels.extend([len(class_names)] * len(found))
        class_names.append(folder.name)
    if not paths:
        raise ValueError(f"no images found in {root}; {LAYOUT_HELP}")
    return ImageFolder(root, paths, np.asarray(labels, dtype=np.int64), class_names)
