"""Each shared fact has one home and its users read it from there (issue 13): pixel statistics
(`models/pixels.py`) and where the shared real cells live (`cellssl_jax.data.shared_data_dir`).
The class vocabularies and the 70/30 split are tied in test_builders.py and test_splits.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cellssl_jax.data import SHARED_DATA_ENV, shared_data_dir
from cellssl_jax.dino.augment import AugmentConfig
from cellssl_jax.dino.config import default_config
from cellssl_jax.models import pixels

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for d in ("cellssl_jax", "scripts", "configs") if (REPO / d).is_dir()
    for p in (REPO / d).rglob("*.py")
)


def _constants(path: Path) -> list[object]:
    """Literal values in a module's code (docstrings and f-string message text left out)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in skip]


def test_pixel_statistics_come_from_models_pixels():
    assert tuple(default_config().augment.mean) == pixels.PAPER_MEAN
    assert tuple(default_config().augment.std) == pixels.PAPER_STD
    assert (AugmentConfig().mean, AugmentConfig().std) == (pixels.PAPER_MEAN, pixels.PAPER_STD)
    stats = set(pixels.IMAGENET_MEAN + pixels.IMAGENET_STD)
    home = REPO / "cellssl_jax" / "models" / "pixels.py"
    elsewhere = [p.relative_to(REPO) for p in SOURCES if p != home and stats & set(_constants(p))]
    assert not elsewhere, f"ImageNet statistics written out again in {elsewhere}"


def test_shared_data_location_has_one_home(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv(SHARED_DATA_ENV)
    assert shared_data_dir() == REPO.parent / "shared" / "data"
    home = REPO / "cellssl_jax" / "data" / "__init__.py"
    spellings = {SHARED_DATA_ENV, "shared", "shared/data"}
    elsewhere = [
        p.relative_to(REPO)
        for p in SOURCES + sorted((REPO / "tests").glob("*.py"))
        if p not in (home, Path(__file__).resolve())
        and any(
            isinstance(c, str) and (c in spellings or "shared/data" in c) for c in _constants(p)
        )
    ]
    assert not elsewhere, f"the shared-data location spelled out again in {elsewhere}"


@pytest.mark.parametrize("fact", ["vocab", "splits"])
def test_fact_modules_need_neither_jax_nor_tfds(fact):
    tree = ast.parse((REPO / "cellssl_jax" / f"{fact}.py").read_text())
    imported = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imported <= {"__future__", "collections", "hashlib", "pathlib", "numpy"}
