"""Datasets (TFDS builders) and the input pipeline. Imports neither models nor dino."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "CELLSSL_SHARED_DATA"


def shared_data_dir() -> Path:
    """The real cells that tests, scripts and benchmarks share: $CELLSSL_SHARED_DATA, else
    `<checkout>/../shared/data` (the one place that says where they live)."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return Path(os.environ.get(SHARED_DATA_ENV, default))
