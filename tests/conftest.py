"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-image folder (env CELLSSL_SHARED_DATA, default <repo>/../shared/data)."""
    root = Path(os.environ.get("CELLSSL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(
            f"real data not found at {root} (set CELLSSL_SHARED_DATA to the shared/data folder)"
        )
    return root
