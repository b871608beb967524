"""Featurizers: what turns a uint8 cell image into a feature row, and how an encoder reads it.

Implementations of one protocol: the encoder's CLS features (`EncoderFeatures`, kind "xcit"),
the colour histogram (`ColourHistogram`, kind "colorhist"), the nucleus's shape and the
cytoplasm's colour (`CellShape`, kind "cellshape", cellshape.py) and a concatenation of
featurizers (`Concat`, e.g. "xcit+colorhist+cellshape": on PBC better than any alone,
docs/MODEL_CARD.md, docs/LAB_COUNT.md). Kind names are parsed once, in `make_featurizer`, for
the command lines.

Read size (the one policy every job uses, `read_size`): by default each image keeps its native
size, with height and width each rounded to the nearest multiple of 32 and of the patch (so a
dataset of one native size compiles one shape: Acevedo 360x363 -> 352x352, Matek BM 250 -> 256,
Raabin 575 -> 576). An encoder made for one resolution (its `input_size`, e.g. the bundled one)
gets every image resized to that square instead; an explicit side S forces S x S, and "native"
reads every image at exactly its own size (the paper's protocol). XCiT takes any side (its
stride-2 convs pad, as timm's), so S need not be a multiple of the patch. An encoder whose file
carries a crop rule (featurize/crop.py: only the cell, at the scale of its input_size) is read
through that rule by default; an explicit side reads the whole image, as before.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cellssl_jax import colorhist
from cellssl_jax.cache import EXPORT_FOLDER, FeatureTable, compilation_cache, pixel_key
from cellssl_jax.data.reading import resize_rgb
from cellssl_jax.feature_kinds import DEFAULT_KIND, KINDS, NATIVE
from cellssl_jax.featurize import cellshape
from cellssl_jax.featurize.crop import CropRule

log = logging.getLogger("cellssl_jax.featurize")

BUCKET = 32  # native sizes are rounded to multiples of this (divisible by patch 8 and 16)


def bucket_size(height: int, width: int, step: int = BUCKET) -> tuple[int, int]:
    """Native size rounded to the nearest multiple of `step` (at least `step`)."""
    return max(step, round(height / step) * step), max(step, round(width / step) * step)


def check_image_size(image_size: int | str | None) -> None:
    """A side >= 1, "native" or None (the default policy); anything else is an error."""
    valid = image_size in (None, NATIVE) or (isinstance(image_size, int) and image_size >= 1)
    if not valid:
        raise ValueError(f"image size must be >= 1 or {NATIVE!r}, got {image_size!r}")


@dataclass(frozen=True)
class ReadSize:
    """How an encoder reads images: `side` S (S x S), NATIVE (each image as it is) or None
    (native size rounded to multiples of `step`); with `crop`, only the cell, by that rule
    (at the scale of S x S)."""

    side: int | str | None
    step: int = BUCKET
    crop: CropRule | None = None

    def __post_init__(self):
        if self.crop is not None and self.crop.scale_to != self.side:
            raise ValueError(f"a crop rule at the scale of {self.crop.scale_to} px needs that "
                             f"read side, got {self.side!r}")

    @property
    def name(self) -> str:
        """As features files and the cache record it: "224", "native", "native/32" or, with a
        crop rule, "352/stain192of352m0.3t40"."""
        name = str(self.side) if self.side else f"native/{self.step}"
        return f"{name}/{self.crop.name}" if self.crop is not None else name

    @property
    def square(self) -> int | None:
        """The square side every image is read at (None: native sizes)."""
        return self.side if isinstance(self.side, int) else None

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The image at the size the encoder reads it."""
        if self.crop is not None:
            return self.crop(image)
        if self.side == NATIVE:
            return image
        h, w = image.shape[:2]
        size = (self.side,) * 2 if self.side else bucket_size(h, w, self.step)
        return resize_rgb(image, size)


def read_size(encoder, image_size: int | str | None = None) -> ReadSize:
    """The read size of `encoder` (image_size None: its `input_size` and crop rule, else native
    rounded to multiples of lcm(32, patch); an explicit size reads the whole image)."""
    check_image_size(image_size)
    step = math.lcm(BUCKET, encoder.model.patch_size)
    if image_size is None:  # the resolution (and crop) the encoder's file asks for
        crop = getattr(encoder, "crop", None)
        crop = CropRule.from_meta(crop, encoder.input_size) if crop else None
        return ReadSize(encoder.input_size, step, crop)
    return ReadSize(image_size, step)


@dataclass
class Counts:
    """How many rows an encoder computed and took from the cache, and the shapes it compiled."""

    encoded: int = 0
    from_cache: int = 0
    shapes: set[tuple[int, int]] = field(default_factory=set)


class Featurizer(Protocol):
    """Turns uint8 RGB images [H, W, 3] of any size into feature rows.

    `prepare` runs per image in reader threads (cache lookup, resizing, cheap features);
    calling the featurizer on a chunk of prepared images gives their rows [len, dim], in order.
    """

    name: str  # recorded as the features file's `encoder`
    sha256: str  # the encoder file's sha256 ("" without an encoder)
    dim: int
    read: ReadSize | None  # how its encoder reads images (None: no encoder)
    batch_size: int  # images per call; images are read in chunks of a few batches

    def prepare(self, image: np.ndarray) -> Any: ...

    def __call__(self, prepared: Sequence[Any]) -> np.ndarray: ...

    def doubts(self, prepared: Any) -> list[tuple[str, str]]:
        """Why a prepared image's row may be wrong, as (kind, reason) pairs (images.doubts)."""

    def load_cache(self) -> None:
        """Read the rows other runs added to the features cache (a no-op without one)."""

    def flush_cache(self) -> None:
        """Write the rows computed since the last flush to the features cache."""

    @property
    def counts(self) -> Counts: ...


@dataclass
class _Prepared:
    key: str  # the image's cache key ("" without a cache)
    image: np.ndarray | None  # resized for the encoder; None when the cache has the row
    row: np.ndarray | None  # the encoder's row, when the cache has it


class EncoderFeatures:
    """The encoder's CLS features, batched by read shape (each batch padded to `batch_size`, so
    each image shape compiles once).

    `cache`: the features cache folder; rows are looked up there by pixel hash and new ones
    added, so every featurizer with this encoder and read size shares them. None: every image
    is encoded.
    """

    def __init__(self, encoder, batch_size: int = 32, image_size: int | str | None = None,
                 cache: Path | None = None):
        self.encoder, self.batch_size = encoder, batch_size
        self.read = read_size(encoder, image_size)
        self.name, self.sha256, self.dim = encoder.name, encoder.sha256, encoder.dim
        self.table = None
        if cache is not None:
            self.table = FeatureTable(cache, "xcit", self.sha256, self.read.name, self.dim)
        self.counts = Counts()

    def load_cache(self) -> None:
        if self.table is not None:
            rows = self.table.load()
            log.info("features cache %s: %d encoder rows", self.table.folder, rows)

    def flush_cache(self) -> None:
        if self.table is not None:
            self.table.flush()

    def prepare(self, image: np.ndarray) -> _Prepared:
        key = pixel_key(image) if self.table is not None else ""
        row = self.table.get(key) if key else None
        return _Prepared(key, self.read.resize(image) if row is None else None, row)

    def doubts(self, prepared: _Prepared) -> list[tuple[str, str]]:
        return []

    def __call__(self, prepared: Sequence[_Prepared]) -> np.ndarray:
        rows = np.zeros((len(prepared), self.dim), np.float32)
        todo = [i for i, p in enumerate(prepared) if p.row is None]
        if todo:
            rows[todo] = self._embed([prepared[i].image for i in todo])
        for i, p in enumerate(prepared):
            if p.row is not None:
                rows[i] = p.row
            elif self.table is not None:
                self.table.put(p.key, rows[i])
        self.counts.encoded += len(todo)
        self.counts.from_cache += len(prepared) - len(todo)
        return rows

    def _embed(self, images: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), self.dim), np.float32)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(img.shape[:2], []).append(i)
        for shape, rows in by_shape.items():
            if shape not in self.counts.shapes:
                log.info("compiling the encoder for %dx%d images", *shape)
                self.counts.shapes.add(shape)
            for start in range(0, len(rows), self.batch_size):
                part = rows[start : start + self.batch_size]
                batch = np.stack([images[i] for i in part])
                if len(part) < self.batch_size:  # pad: one compiled shape per image size
                    pad = np.repeat(batch[-1:], self.batch_size - len(part), axis=0)
                    batch = np.concatenate([batch, pad])
                out[part] = self.encoder.embed(batch)[: len(part)]
        return out


class _Measured:
    """A featurizer computed per image in the reader threads (`prepare`), with no encoder:
    not cached (it costs less than the decoding it needs). Subclasses set `name`, `dim` and
    `prepare`."""

    sha256, read = "", None
    name: str
    dim: int

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self.counts = Counts()

    def load_cache(self) -> None:
        pass

    def flush_cache(self) -> None:
        pass

    def prepare(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def doubts(self, prepared: np.ndarray) -> list[tuple[str, str]]:
        return []

    def __call__(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.dim), np.float32)
        return np.stack(prepared)


class ColourHistogram(_Measured):
    """Per-channel colour histograms of the whole image (colorhist.py), any image size."""

    name, dim = colorhist.NAME, 3 * colorhist.BINS

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return colorhist.colour_histogram(image)


class CellShape(_Measured):
    """The nucleus's shape and the colour and texture around it (cellshape.py), measured in
    the cell's window at one fixed scale whatever the image's size."""

    name, dim = cellshape.NAME, cellshape.DIM

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return cellshape.cell_shape(image)

    def doubts(self, prepared: np.ndarray) -> list[tuple[str, str]]:
        """A row of zeros: no nucleus was found, so its cell-shape columns say nothing."""
        return [] if prepared.any() else [("unstained", cellshape.NO_NUCLEUS)]


class Concat:
    """Featurizers side by side: their rows concatenated in order."""

    def __init__(self, parts: Sequence[Featurizer]):
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        self.sha256 = "+".join(p.sha256 for p in self.parts if p.sha256)
        self.dim = sum(p.dim for p in self.parts)
        self.read = next((p.read for p in self.parts if p.read is not None), None)
        self.batch_size = max(p.batch_size for p in self.parts)

    @property
    def counts(self) -> Counts:
        counts = [p.counts for p in self.parts]
        return Counts(sum(c.encoded for c in counts), sum(c.from_cache for c in counts),
                      set().union(*(c.shapes for c in counts)))

    def load_cache(self) -> None:
        for p in self.parts:
            p.load_cache()

    def flush_cache(self) -> None:
        for p in self.parts:
            p.flush_cache()

    def prepare(self, image: np.ndarray) -> tuple:
        return tuple(p.prepare(image) for p in self.parts)

    def doubts(self, prepared: tuple) -> list[tuple[str, str]]:
        return [d for p, x in zip(self.parts, prepared, strict=True) for d in p.doubts(x)]

    def __call__(self, prepared: Sequence[tuple]) -> np.ndarray:
        return np.concatenate(
            [p([x[k] for x in prepared]) for k, p in enumerate(self.parts)], axis=1
        )


MEASURED = {"colorhist": ColourHistogram, "cellshape": CellShape}  # the parts with no encoder


def needs_encoder(kind: str) -> bool:
    """Whether features `kind` need an encoder (checked: unknown kinds are an error)."""
    if kind not in KINDS:
        raise ValueError(f"unknown features {kind!r}; choose from {', '.join(KINDS)}")
    return "xcit" in kind.split("+")


def make_featurizer(
    kind: str = DEFAULT_KIND,
    encoder=None,
    batch_size: int = 32,
    image_size: int | str | None = None,
    cache: Path | None = None,
) -> Featurizer:
    """The featurizer of a kind name (KINDS). `encoder`: a loaded Encoder, an encoder file or
    None (the bundled one), loaded only when `kind` needs it; `cache`: the features cache
    folder (None: no cache), also where JAX's compilation cache goes (cache.compilation_cache)
    and, beside it, the encoder's exported function (encoder.export_cache)."""
    check_image_size(image_size)
    encoded = needs_encoder(kind)  # checks the name first
    measured = [MEASURED[p](batch_size) for p in kind.split("+") if p != "xcit"]
    if not encoded:
        return measured[0] if len(measured) == 1 else Concat(measured)
    compiled = compilation_cache(cache)  # before anything compiles
    log.info("compilation cache %s", compiled or "off")
    if encoder is None or isinstance(encoder, str | Path):
        from cellssl_jax.encoder import load_encoder  # JAX only when needed

        encoder = load_encoder(encoder)
        log.info("encoder %s (%s, sha256 %s)", encoder.name, encoder.arch, encoder.sha256[:12])
    if compiled is not None:
        from cellssl_jax.encoder import export_cache

        export_cache(encoder, Path(cache) / EXPORT_FOLDER)
    features = EncoderFeatures(encoder, batch_size, image_size, cache)
    return Concat([features, *measured]) if measured else features
