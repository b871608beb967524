"""Shared fixtures: where the real cells are (../shared/data, or $CELLSSL_SHARED_DATA)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real-cell folders; tests using it skip when it is absent (e.g. a bare clone)."""
    root = Path(os.environ.get("CELLSSL_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real cell images not found at {root} (set CELLSSL_SHARED_DATA)")
    return root
