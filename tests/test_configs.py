"""configs/: every preset loads, has exactly the fields of dino/config.py, and builds its models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cellssl_jax.dino.config import default_config
from cellssl_jax.train import augment_config, backbone_config, build_models

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _fields(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _fields(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_there_are_presets():
    assert {p.stem for p in PRESETS} >= {"cpu_tiny", "paper_xcit_s12_p8", "dino_xcit_s12_p16"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_is_complete_and_builds(path):
    config = _load(path)
    assert _fields(config.to_dict()) == _fields(default_config().to_dict())
    aug = augment_config(config)
    assert aug.global_size <= config.data.image_size and aug.local_size < aug.global_size
    student, teacher = build_models(config, backbone_config(config))
    assert student.backbone.embed_dim == teacher.backbone.embed_dim
    patch = student.backbone.patch_size
    assert aug.global_size % patch == 0 and aug.local_size % patch == 0  # whole patch grids
