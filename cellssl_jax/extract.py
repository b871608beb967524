"""Feature extraction: an encoder (or the colour-histogram baseline) over a dataset -> npz.

  python -m cellssl_jax.extract --images DIR --out F.npz                 # bundled encoder
  python -m cellssl_jax.extract --images tfds:acevedo/test --data_dir D --out F.npz
  python -m cellssl_jax.extract --images DIR --features colorhist --out F.npz
  python -m cellssl_jax.extract --images DIR --features xcit+colorhist --out F.npz

Image size: by default each image keeps its native size, with height and width each rounded
to the nearest multiple of 32 (a multiple of both patch sizes, 8 and 16) and resized to it, so
a dataset of one native size compiles one shape (Acevedo 360x363 -> 352x352, Matek BM 250 ->
256, Raabin 575 -> 576). An encoder made for one resolution (its `input_size`, e.g. the bundled
one) gets every image resized to that square instead, and `--image_size S` forces S x S.
`--image_size native` reads every image at exactly its own size, as the paper's code does (the
paper protocol). XCiT takes any side (its stride-2 convs pad, as timm's), so S need not be a
multiple of the patch. Images of one shape are batched together and every batch is padded to
`--batch_size`, so each image shape compiles once.

Features cache: the encoder's row of each image is kept in the features cache
(`cellssl_jax/cache.py`: $CELLSSL_CACHE, else ~/.cache/cellssl_jax/features), keyed by the
image's pixels, the encoder's sha256 and the read size, so no job encodes a cell twice;
`--no_cache` bypasses it.

Resumable: every `--save_every` seconds the rows done so far go to `<out>.partial.npz`; a rerun
with the same arguments continues from there. Unreadable images are skipped, listed in the npz
(`skipped`) and in `<out stem>.skipped.csv`. Readable but doubtful images (greyscale, an alpha
channel hiding pixels, far larger than the read size) are kept, warned about once per kind and
listed in `<out stem>.flagged.csv`.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cellssl_jax import colorhist
from cellssl_jax.cache import FeatureTable, cache_root, pixel_key
from cellssl_jax.data.images import UnreadableImage, doubts
from cellssl_jax.data.reading import FolderSource, resize_rgb, tfds_source
from cellssl_jax.fewshot.features import save_features
from cellssl_jax.logs import logging_to

log = logging.getLogger("cellssl_jax.extract")

BUCKET = 32  # native sizes are rounded to multiples of this (divisible by patch 8 and 16)
CHUNK_BATCHES = 8  # images are read and finished in chunks of this many batches
FEATURE_KINDS = ("xcit", "colorhist", "xcit+colorhist")
NATIVE = "native"  # --image_size value: every image at exactly its own size


def bucket_size(height: int, width: int, step: int = BUCKET) -> tuple[int, int]:
    """Native size rounded to the nearest multiple of `step` (at least `step`)."""
    return max(step, round(height / step) * step), max(step, round(width / step) * step)


def open_source(spec: str, data_dir: str | None):
    """A folder path or `tfds:<name>/<split>` -> (source, description)."""
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


def uses_encoder(kind: str) -> bool:
    """Whether features `kind` need an encoder (checked: unknown kinds are an error)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown features {kind!r}; choose from {', '.join(FEATURE_KINDS)}")
    return "xcit" in kind


def load_extractor(
    kind: str,
    checkpoint: str | Path | None = None,
    batch_size: int = 32,
    image_size: int | str | None = None,
    cache: Path | None = None,
) -> Extractor:
    """An Extractor for `kind`, loading the encoder it needs (the bundled one when None);
    `cache`: the features cache folder (None: no cache)."""
    encoder = None
    if uses_encoder(kind):
        from cellssl_jax.encoder import load_encoder  # JAX only when needed

        encoder = load_encoder(checkpoint)
        log.info("encoder %s (%s, sha256 %s)", encoder.name, encoder.arch, encoder.sha256[:12])
    return Extractor(kind, encoder, batch_size, image_size, cache)


@dataclass
class Prepared:
    """One image made ready in a reader thread."""

    key: str  # the image's cache key ("" without a cache)
    image: np.ndarray | None  # resized for the encoder; None when not needed
    hist: np.ndarray | None  # colour histogram, for kinds with colour
    row: np.ndarray | None  # the encoder's row, when the cache has it


class Extractor:
    """Turns uint8 images of any size into feature rows, batching by (resized) shape.

    `image_size`: a side S (S x S), "native" (each image as it is) or None (the encoder's
    `input_size`, else native rounded to multiples of 32).

    Kinds: "xcit" (encoder CLS), "colorhist" (the colour baseline) and "xcit+colorhist" (both,
    concatenated: on PBC better than either alone, docs/MODEL_CARD.md).

    `cache`: the features cache folder; the encoder's rows are looked up there by pixel hash
    and new ones added (`encoded` / `from_cache` count both), so "xcit" and "xcit+colorhist"
    share them. None: every image is encoded.
    """

    def __init__(
        self,
        kind: str,
        encoder=None,
        batch_size: int = 32,
        image_size: int | str | None = None,
        cache: Path | None = None,
    ):
        self.kind, self.encoder, self.batch_size = kind, encoder, batch_size
        self.uses_encoder, self.uses_colour = uses_encoder(kind), "colorhist" in kind
        if self.uses_encoder and encoder is None:
            raise ValueError(f"features {kind!r} need an encoder")
        valid = image_size in (None, NATIVE) or (isinstance(image_size, int) and image_size >= 1)
        if not valid:
            raise ValueError(f"image size must be >= 1 or {NATIVE!r}, got {image_size!r}")
        if image_size is None and encoder is not None:
            image_size = encoder.input_size  # the resolution the encoder is made for
        self.image_size = image_size
        self.shapes: set[tuple[int, int]] = set()
        names, self.sha256, self.dim = [], "", 0
        if self.uses_encoder:
            patch = encoder.model.patch_size
            self.step = math.lcm(BUCKET, patch)
            names.append(encoder.name)
            self.sha256, self.dim = encoder.sha256, encoder.dim
        if self.uses_colour:
            names.append(colorhist.NAME)
            self.dim += 3 * colorhist.BINS
        self.name = "+".join(names)
        self.table = None
        if cache is not None and self.uses_encoder:
            self.table = FeatureTable(cache, "xcit", self.sha256, self.read_size, encoder.dim)
        self.encoded = self.from_cache = 0

    @property
    def read_size(self) -> str:
        """How the encoder reads images, as features files record it ("" without an encoder)."""
        if not self.uses_encoder:
            return ""
        return str(self.image_size) if self.image_size else f"native/{self.step}"

    @property
    def read_side(self) -> int | None:
        """The square side the encoder reads every image at (None: native sizes, no encoder)."""
        return self.image_size if self.uses_encoder and isinstance(self.image_size, int) else None

    def prepare(self, image: np.ndarray) -> Prepared:
        """Per-image work done in the reader threads: cache lookup, resizing, colour."""
        key = pixel_key(image) if self.table is not None else ""
        row = self.table.get(key) if key else None
        hist = colorhist.colour_histogram(image) if self.uses_colour else None
        resized = self.resize(image) if self.uses_encoder and row is None else None
        return Prepared(key, resized, hist, row)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The image at the size the encoder reads it."""
        if self.image_size == NATIVE:
            return image
        h, w = image.shape[:2]
        size = (self.image_size,) * 2 if self.image_size else bucket_size(h, w, self.step)
        return resize_rgb(image, size)

    def __call__(self, prepared: list[Prepared]) -> np.ndarray:
        """Feature rows [len(prepared), D] in input order; new encoder rows go to the cache."""
        parts = []
        if self.uses_encoder:
            rows = np.zeros((len(prepared), self.encoder.dim), np.float32)
            todo = [i for i, p in enumerate(prepared) if p.row is None]
            if todo:
                rows[todo] = self._embed([prepared[i].image for i in todo])
            for i, p in enumerate(prepared):
                if p.row is not None:
                    rows[i] = p.row
                elif self.table is not None:
                    self.table.put(p.key, rows[i])
            self.encoded += len(todo)
            self.from_cache += len(prepared) - len(todo)
            parts.append(rows)
        if self.uses_colour:
            parts.append(np.zeros((len(prepared), 3 * colorhist.BINS), np.float32)
                         if not prepared else np.stack([p.hist for p in prepared]))
        return np.concatenate(parts, axis=1)

    def _embed(self, images: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), self.encoder.dim), np.float32)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(img.shape[:2], []).append(i)
        for shape, rows in by_shape.items():
            if shape not in self.shapes:
                log.info("compiling the encoder for %dx%d images", *shape)
                self.shapes.add(shape)
            for start in range(0, len(rows), self.batch_size):
                part = rows[start : start + self.batch_size]
                batch = np.stack([images[i] for i in part])
                if len(part) < self.batch_size:  # pad: one compiled shape per image size
                    pad = np.repeat(batch[-1:], self.batch_size - len(part), axis=0)
                    batch = np.concatenate([batch, pad])
                out[part] = self.encoder.embed(batch)[: len(part)]
        return out


class Partial:
    """Rows finished so far, saved to / resumed from `<out>.partial.npz`."""

    def __init__(self, out: Path, fingerprint: dict):
        self.path = out.with_name(out.name + ".partial.npz")
        self.fingerprint = json.dumps(fingerprint, sort_keys=True)
        self.next_index = 0
        self.features: list[np.ndarray] = []
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.flagged: list[tuple[str, str, str]] = []  # (id, kind, reason)

    def resume(self) -> bool:
        if not self.path.exists():
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


def _read(source, index: int, extractor: Extractor):
    """(item without pixels, prepared image) or (None, reason) for an unreadable image; the
    item's "doubts" say why its features may be wrong (images.doubts)."""
    try:
        item = source[index]
    except UnreadableImage as err:
        return None, err.reason
    image = np.asarray(item.pop("image"))
    item["doubts"] = doubts(image, item.pop("transparent", 0.0), extractor.read_side)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return item, extractor.prepare(image[..., :3].astype(np.uint8, copy=False))


def _write_csv(path: Path, rows: list[tuple], header: tuple[str, ...] = ("path", "reason")) -> Path:
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


def _chunks(n: int, start: int, size: int) -> Iterator[range]:
    for lo in range(start, n, size):
        yield range(lo, min(n, lo + size))


def extract(
    source,
    spec: str,
    extractor: Extractor,
    out: Path,
    workers: int = 4,
    save_every: float = 60.0,
) -> dict:
    """Run `extractor` over `source`, resuming from a partial file; writes `out`. Returns stats."""
    fingerprint = {
        "images": spec,
        "count": len(source),
        "features": extractor.name,
        "sha256": extractor.sha256,
        "image_size": extractor.image_size,
    }
    part = Partial(out, fingerprint)
    if part.resume():
        log.info("resuming %s at image %d of %d", part.path, part.next_index, len(source))
    if extractor.table is not None:
        rows = extractor.table.load()
        log.info("features cache %s: %d encoder rows", extractor.table.folder, rows)
    chunk = extractor.batch_size * CHUNK_BATCHES
    start, last_save, done_now = time.perf_counter(), time.perf_counter(), 0
    encoded, from_cache = extractor.encoded, extractor.from_cache
    # The bar is drawn on a terminal only (in a log file every redraw, the closing one included,
    # would be a line of its own); log lines print above it.
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(source), initial=part.next_index, unit="img", desc="extract",
             disable=None) as bar,
        logging_redirect_tqdm([logging.getLogger(), logging.getLogger("cellssl_jax")]),
    ):
        chunks = _chunks(len(source), part.next_index, chunk)

        def submit(r: range | None) -> list[Future] | None:
            return None if r is None else [pool.submit(_read, source, i, extractor) for i in r]

        current = next(chunks, None)
        pending = submit(current)
        try:
            while current is not None:
                following = next(chunks, None)
                ahead = submit(following)  # read the next chunk while this one is encoded
                results = [f.result() for f in pending]
                good = [
                    (i, item, x) for i, (item, x) in zip(current, results, strict=True) if item
                ]
                for i, (item, reason) in zip(current, results, strict=True):
                    if item is None:
                        ident = _item_id(source, i, None, spec)
                        log.warning("skipping unreadable image %s: %s", ident, reason)
                        part.skipped.append((ident, reason))
                feats = extractor([x for _, _, x in good])
                part.features.extend(feats)
                part.labels.extend(int(item["label"]) for _, item, _ in good)
                part.ids.extend(_item_id(source, i, item, spec) for i, item, _ in good)
                part.flagged.extend(
                    (_item_id(source, i, item, spec), kind, reason)
                    for i, item, _ in good
                    for kind, reason in item["doubts"]
                )
                part.next_index = current[-1] + 1
                done_now += len(current)
                bar.update(len(current))
                if time.perf_counter() - last_save > save_every and following is not None:
                    part.save(extractor.dim)
                    if extractor.table is not None:
                        extractor.table.flush()
                    last_save = time.perf_counter()
                current, pending = following, ahead
        finally:  # rows encoded before an error or Ctrl-C are kept for the next run
            if extractor.table is not None:
                extractor.table.flush()
    seconds = time.perf_counter() - start
    if not part.features:
        raise ValueError(f"no readable image in {spec} ({len(part.skipped)} skipped)")
    save_features(
        out,
        np.stack(part.features),
        np.asarray(part.labels),
        list(source.class_names),
        part.ids,
        extractor.name,
        extractor.sha256,
        [s for s, _ in part.skipped],
        extractor.read_size,
    )
    if part.skipped:
        skipped_csv = _write_csv(out.with_name(out.stem + ".skipped.csv"), part.skipped)
        log.info("wrote %s (%d unreadable images)", skipped_csv, len(part.skipped))
    if part.flagged:
        flagged_csv = _write_csv(out.with_name(out.stem + ".flagged.csv"),
                                 [(i, r) for i, _, r in part.flagged])
        warn_flagged(part.flagged, flagged_csv)
    part.path.unlink(missing_ok=True)
    return {
        "images": len(part.features),
        "skipped": len(part.skipped),
        "skipped_files": part.skipped,
        "flagged_files": [(i, r) for i, _, r in part.flagged],
        "encoded": extractor.encoded - encoded,
        "from_cache": extractor.from_cache - from_cache,
        "seconds": seconds,
        "images_per_second": done_now / seconds if seconds > 0 else float("nan"),
        "shapes": sorted(extractor.shapes),
    }


def _image_size(text: str) -> int | str:
    if text == NATIVE:
        return NATIVE
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"expected a side >= 1 or {NATIVE!r}, got {text!r}")
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cellssl_jax.extract",
        description=__doc__.split("\n")[0],
        epilog="Outputs: --out (npz: features, labels, class_names, paths, encoder, "
        "encoder_sha256, skipped) and <stem>.skipped.csv when images were unreadable.",
    )
    parser.add_argument(
        "--images", required=True, help="folder (class sub-folders or flat) or tfds:<name>/<split>"
    )
    parser.add_argument("--out", type=Path, required=True, help="features file to write (.npz)")
    parser.add_argument(
        "--features",
        choices=FEATURE_KINDS,
        default="xcit",
        help="xcit: encoder CLS features; colorhist: 3x32-bin colour histogram baseline; "
        "xcit+colorhist: both, concatenated",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="encoder file (default: the bundled one)"
    )
    parser.add_argument("--data_dir", default=None, help="TFDS data dir for tfds: inputs")
    parser.add_argument(
        "--batch_size", type=int, default=32, help="images per encoder call (default 32)"
    )
    parser.add_argument(
        "--image_size",
        type=_image_size,
        default=None,
        help="S: resize every image to SxS (any S >= 1); native: every image at exactly its "
        "own size (the paper's protocol); default: the encoder's input_size if it has one, "
        "else native size rounded to multiples of 32",
    )
    parser.add_argument("--workers", type=int, default=4, help="image reading threads")
    parser.add_argument(
        "--save_every", type=float, default=60.0, help="seconds between partial saves (resume)"
    )
    add_cache_flag(parser)
    return parser


def add_cache_flag(parser: argparse.ArgumentParser) -> None:
    """--no_cache, as every job that extracts features offers it."""
    parser.add_argument(
        "--no_cache",
        action="store_true",
        help="neither read nor add to the features cache ($CELLSSL_CACHE, default "
        "~/.cache/cellssl_jax/features): encode every image",
    )


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.workers < 1:
        raise SystemExit("error: --batch_size and --workers must be >= 1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with logging_to(args.out.with_name(args.out.stem + ".extract.log")):
        try:
            source = open_source(args.images, args.data_dir)
            extractor = load_extractor(
                args.features,
                args.checkpoint,
                args.batch_size,
                args.image_size,
                cache_root(not args.no_cache),
            )
            stats = extract(source, args.images, extractor, args.out, args.workers, args.save_every)
        except (ValueError, FileNotFoundError, NotADirectoryError) as err:
            raise SystemExit(f"error: {err}") from None
        log.info(
            "wrote %s: %d images (%d skipped, %d encoded, %d from the cache), %.1f img/s, "
            "shapes %s",
            args.out,
            stats["images"],
            stats["skipped"],
            stats["encoded"],
            stats["from_cache"],
            stats["images_per_second"],
            stats["shapes"] or "n/a",
        )
    return stats


if __name__ == "__main__":
    main()
