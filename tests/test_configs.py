"""cellssl_jax/configs: every preset loads, has exactly the fields of dino/config.py, and builds
its models."""

from __future__ import annotations

import importlib

import pytest

from cellssl_jax.configs import presets, resolve
from cellssl_jax.dino.config import default_config
from cellssl_jax.trainer import augment_config, backbone_config, build_models, load_config

PRESETS = presets()


def _fields(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _fields(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_there_are_presets():
    assert set(PRESETS) >= {"cpu_tiny", "paper_xcit_s12_p8", "dino_xcit_s12_p16", "bundled_cpu"}


def test_presets_are_importable_and_named_three_ways(tmp_path):
    """Installed with the package: by module, by name, by the pre-install path; files win."""
    module = importlib.import_module("cellssl_jax.configs.cpu_tiny")
    assert resolve("cpu_tiny") == resolve("configs/cpu_tiny.py") == module.__file__
    own = tmp_path / "cpu_tiny.py"
    own.write_text("from cellssl_jax.configs.cpu_tiny import get_config\n")
    assert resolve(str(own)) == str(own)
    assert load_config(str(own)).to_dict() == load_config("cpu_tiny").to_dict()
    assert load_config("cpu_tiny", {"batch_size": 8}).batch_size == 8
    with pytest.raises(ValueError, match="neither a file nor a preset"):
        load_config("no_such_preset")


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_complete_and_builds(name):
    config = load_config(name)
    assert _fields(config.to_dict()) == _fields(default_config().to_dict())
    aug = augment_config(config)
    assert aug.global_size <= config.data.image_size and aug.local_size < aug.global_size
    student, teacher = build_models(config, backbone_config(config))
    assert student.backbone.embed_dim == teacher.backbone.embed_dim
    patch = student.backbone.patch_size
    assert aug.global_size % patch == 0 and aug.local_size % patch == 0  # whole patch grids
