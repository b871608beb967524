"""Features cache: the encoder's row of every image already encoded, so no job encodes it twice.

The encoder runs at 2-8 img/s on a 2-core CPU; switching `--classifier` or `--features`,
running `select` after `classify` or the demo's second feature kind would otherwise re-encode
every cell. Rows are kept per image, keyed by a hash of the decoded pixels (the same cell
gives the same key whether it comes from a folder or a TFDS split, whatever its file name),
in one table per (feature kind, encoder sha256, read size): adding cells to a folder reuses
the rows of the others. Colour histograms are not cached: they cost less than the decoding
they need.

Location: $CELLSSL_CACHE, else ~/.cache/cellssl_jax/features; jobs bypass it with
`--no_cache`. JAX's persistent compilation cache lives under the same root (`jax/`), so a lab
job's second run on new cells skips compiling the encoder (`compilation_cache`), and beside it
(`jax_export/`) the encoder's traced and lowered function per batch shape, so that run skips
tracing it too (`encoder.export_cache`); `--no_cache` turns both off, and
$CELLSSL_COMPILATION_CACHE=0 turns off only them.
Delete the folder to empty it. A table is a folder of npz shards (`keys` [N],
`features` [N, D]), each written whole under a unique name, so concurrent jobs never see a
half-written file; many shards are merged on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV = "CELLSSL_CACHE"
COMPILATION_ENV = "CELLSSL_COMPILATION_CACHE"  # "0" / "off" / "false" / "no": compile afresh
COMPILATION_FOLDER = "jax"  # JAX's compilation cache, under the features cache root
EXPORT_FOLDER = "jax_export"  # the encoder's traced + lowered functions (encoder.export_cache)
MERGE_ABOVE = 32  # shards in a table before they are merged into one


def cache_root(enabled: bool = True) -> Path | None:
    """The cache folder ($CELLSSL_CACHE, else ~/.cache/cellssl_jax/features); None if disabled."""
    if not enabled:
        return None
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "cellssl_jax" / "features")


def compilation_cache(root: str | Path | None) -> Path | None:
    """Turn on JAX's persistent compilation cache in `root`/jax (root None, or
    $CELLSSL_COMPILATION_CACHE off: nothing) and return its folder. Must run before the first
    compilation of the process (JAX decides once whether it uses the cache); a folder set by
    the user ($JAX_COMPILATION_CACHE_DIR) wins."""
    if root is None or os.environ.get(COMPILATION_ENV, "1").lower() in ("0", "off", "false",
                                                                         "no"):
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    folder = Path(root) / COMPILATION_FOLDER
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # the encoder's compiles take seconds, the small ones (input normalisation) too little
    # to matter either way: keep every entry, so a second run compiles nothing
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def pixel_key(image: np.ndarray) -> str:
    """The cache key of an image: sha256 of its shape and uint8 pixels."""
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


class FeatureTable:
    """The cached rows of one (kind, encoder sha256, read size): key -> float32 [dim].

    `load` reads shards written since the last load (other jobs' too); `put` keeps new rows in
    memory until `flush` writes them as one shard.
    """

    def __init__(self, root: str | Path, kind: str, encoder_sha256: str, read_size: str,
                 dim: int):
        if not encoder_sha256:
            raise ValueError("cached features need the encoder's sha256")
        self.dim = dim
        self.describe = {"kind": kind, "encoder_sha256": encoder_sha256,
                         "read_size": read_size, "dim": dim}
        safe_read = read_size.replace("/", "-") or "any"
        self.folder = Path(root) / f"{kind}-{encoder_sha256[:16]}-{safe_read}"
        self.rows: dict[str, np.ndarray] = {}
        self.pending: dict[str, np.ndarray] = {}
        self.seen: set[str] = set()

    def load(self) -> int:
        """Read the shards not read yet; returns how many rows the table holds."""
        shards = sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []
        for shard in shards:
            if shard.name in self.seen:
                continue
            self.seen.add(shard.name)
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, feats = data["keys"].tolist(), data["features"]
            except FileNotFoundError:  # merged away by another job meanwhile
                continue
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                log.warning("ignoring unreadable cache file %s (%s)", shard, err)
                continue
            if feats.shape != (len(keys), self.dim):
                log.warning("ignoring cache file %s: rows of shape %s, expected [%d, %d]",
                            shard, feats.shape, len(keys), self.dim)
                continue
            self.rows.update(zip(keys, feats, strict=True))
        if len(shards) > MERGE_ABOVE:
            self._merge(shards)
        return len(self.rows)

    def get(self, key: str) -> np.ndarray | None:
        return self.rows.get(key)

    def put(self, key: str, row: np.ndarray) -> None:
        row = np.asarray(row, np.float32)
        self.rows[key] = self.pending[key] = row

    def flush(self) -> Path | None:
        """Write the rows added since the last flush as one shard (None when there are none)."""
        if not self.pending:
            return None
        keys = list(self.pending)
        path = self._write(keys, np.stack([self.pending[k] for k in keys]))
        self.pending.clear()
        return path

    def _write(self, keys: list[str], feats: np.ndarray) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder / "table.json"
        if not about.exists():  # what the folder holds, for a person looking at the cache
            about.write_text(json.dumps(self.describe, indent=1))
        path = self.folder / f"{uuid.uuid4().hex}.npz"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.asarray(keys, dtype=str), features=feats)
        tmp.replace(path)
        self.seen.add(path.name)
        return path

    def _merge(self, shards: list[Path]) -> None:
        """All rows in one new shard, then the old shards removed (a reader that misses one
        finds its rows in the new shard on its next load, or recomputes them)."""
        keys = list(self.rows)
        self._write(keys, np.stack([self.rows[k] for k in keys]))
        for shard in shards:
            shard.unlink(missing_ok=True)
