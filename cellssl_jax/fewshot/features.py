"""Features files (npz): the hand-over from `extract` to the few-shot protocols and `classify`.

Layout: `features` float32 [N, D], `labels` int64 [N] (-1 = unlabelled), `class_names` str [C],
`paths` str [N], `encoder` str, `encoder_sha256` str; optional `skipped` str [K] (unreadable
inputs) and `read_size` str (how images were sized for the encoder: "224" for 224 x 224,
"native", "native/32" for native rounded to multiples of 32; "" unknown or no encoder), so that
features of different reads are not compared by mistake. Only numpy here, so a features file
can be evaluated without JAX.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REQUIRED_KEYS = ("features", "labels", "class_names", "paths", "encoder", "encoder_sha256")


@dataclass(frozen=True)
class Features:
    """The arrays of one features file, validated."""

    features: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    paths: list[str]
    encoder: str = ""
    encoder_sha256: str = ""
    skipped: list[str] = field(default_factory=list)
    source: str = "<memory>"
    read_size: str = ""

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features.ndim != 2:
            raise ValueError(
                f"{self.source}: features must be 2-D [N, D], got {self.features.shape}"
            )
        if self.labels.shape != (n,) or len(self.paths) != n:
            raise ValueError(
                f"{self.source}: {n} feature rows but {self.labels.shape[0]} labels and "
                f"{len(self.paths)} paths"
            )
        bad = (self.labels < -1) | (self.labels >= len(self.class_names))
        if bad.any():
            raise ValueError(
                f"{self.source}: labels must be -1 (unlabelled) or 0..{len(self.class_names) - 1}, "
                f"found {sorted(set(self.labels[bad].tolist()))[:5]}"
            )
        if not np.isfinite(self.features).all():
            raise ValueError(f"{self.source}: features contain NaN or inf")

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of the rows that carry a label."""
        return self.labels >= 0

    def subset(self, index: np.ndarray) -> Features:
        """The rows `index` (same vocabulary)."""
        return Features(
            self.features[index],
            self.labels[index],
            self.class_names,
            [self.paths[i] for i in index],
            self.encoder,
            self.encoder_sha256,
            self.skipped,
            self.source,
            self.read_size,
        )

    def check_class_names(self, names: Sequence[str]) -> None:
        """Raise a clear error unless `names` are distinct classes of this file."""
        unknown = [n for n in names if n not in self.class_names]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"{self.source}: classes must be distinct names among {self.class_names}; "
                f"got {list(names)}" + (f" (unknown: {unknown})" if unknown else ""))

    def only_classes(self, names: Sequence[str]) -> Features:
        """The labelled rows of classes `names`, numbered in that order (a laboratory that
        labels a few of the types, e.g. only the white cells); unlabelled rows are dropped."""
        self.check_class_names(names)
        old = [self.class_names.index(n) for n in names]
        keep = np.flatnonzero(np.isin(self.labels, old))
        renumber = np.full(len(self.class_names), -1, np.int64)
        renumber[old] = np.arange(len(names))
        part = self.subset(keep)
        return Features(part.features, renumber[part.labels], list(names), part.paths,
                        self.encoder, self.encoder_sha256, self.skipped, self.source,
                        self.read_size)


def save_features(
    path: str | Path,
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str],
    encoder: str,
    encoder_sha256: str,
    skipped: Sequence[str] = (),
    read_size: str = "",
) -> Path:
    """Write a features file (validated first, written atomically via a temporary name)."""
    path = Path(path)
    feats = Features(
        np.asarray(features, dtype=np.float32),
        np.asarray(labels, dtype=np.int64),
        list(class_names),
        [str(p) for p in paths],
        encoder,
        encoder_sha256,
        list(skipped),
        str(path),
        read_size,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        features=feats.features,
        labels=feats.labels,
        class_names=np.asarray(feats.class_names, dtype=str),
        paths=np.asarray(feats.paths, dtype=str),
        encoder=np.asarray(encoder),
        encoder_sha256=np.asarray(encoder_sha256),
        skipped=np.asarray(feats.skipped, dtype=str),
        read_size=np.asarray(read_size),
    )
    tmp.replace(path)
    return path


def load_features(path: str | Path) -> Features:
    """Read and validate a features file; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    if not zipfile.is_zipfile(path):  # else numpy answers with its allow_pickle text
        raise ValueError(
            f"{path} is not a features file: expected an .npz written by "
            "`python -m cellssl_jax.extract`"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable .npz features file ({err})") from None
    with data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)} (expected keys: {REQUIRED_KEYS})")
        skipped = data["skipped"].tolist() if "skipped" in data.files else []
        return Features(
            data["features"].astype(np.float32, copy=False),
            data["labels"].astype(np.int64, copy=False),
            [str(c) for c in data["class_names"].tolist()],
            [str(p) for p in data["paths"].tolist()],
            str(data["encoder"]),
            str(data["encoder_sha256"]),
            [str(s) for s in skipped],
            str(path),
            str(data["read_size"]) if "read_size" in data.files else "",
        )
